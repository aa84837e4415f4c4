// New-study form: show the second arm's volume list that fits its source.
const radios = document.querySelectorAll('input[name="arm1_source"]');
function update() {
  const source = document.querySelector('input[name="arm1_source"]:checked').value;
  for (const box of document.querySelectorAll("[data-source]")) box.hidden = box.dataset.source !== source;
}
for (const radio of radios) radio.addEventListener("change", update);
update();
