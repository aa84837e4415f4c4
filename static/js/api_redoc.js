// /redoc: ReDoc from the project's own copy (npm redoc, its standalone bundle).
const root = document.getElementById("redoc");
window.Redoc.init(root.dataset.openapiUrl, { hideDownloadButton: false }, root);
