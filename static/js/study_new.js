// New-study form: show the second arm's volume list that fits its source, and the design
// checks of the form as it stands (POST /studies/new/checks), one checkbox per warning.
const form = document.getElementById("new-study");
const radios = document.querySelectorAll('input[name="arm1_source"]');
const list = document.getElementById("checks-list");
const status = document.getElementById("checks-status");
const arms = document.getElementById("checks-arms");

function update() {
  const source = document.querySelector('input[name="arm1_source"]:checked').value;
  for (const box of document.querySelectorAll("[data-source]")) box.hidden = box.dataset.source !== source;
}

function acknowledged() {
  return new Set([...form.querySelectorAll('input[name="acknowledge"]:checked')].map((box) => box.value));
}

function checkItem(check, ticked) {
  const item = document.createElement("li");
  item.className = `check-${check.level}`;
  const text = document.createElement("span");
  const level = document.createElement("strong");
  level.textContent = check.level;
  const code = document.createElement("code");
  code.textContent = check.code;
  text.append(level, " ", code, `: ${check.message}`);
  if (check.level !== "warning") {
    item.append(text);
    return item;
  }
  const label = document.createElement("label");
  label.className = "check";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.name = "acknowledge";
  box.value = check.code;
  box.checked = ticked.has(check.code);
  label.append(box, " ", text);
  item.append(label);
  return item;
}

function armRow(arm) {
  const row = document.createElement("tr");
  const spacing = arm.spacing_mm.map((s) => s.join("×")).join("; ");
  const cells = [`${arm.name} (${arm.truth})`, arm.cases, arm.scans, arm.made_of, spacing, arm.tumor_sizes];
  cells.forEach((value, index) => {
    const cell = document.createElement(index ? "td" : "th");
    if (index === 1 || index === 2) cell.className = "num";
    cell.textContent = String(value);
    row.append(cell);
  });
  return row;
}

function describe(report) {
  const warnings = report.checks.filter((c) => c.level === "warning").length;
  const errors = report.checks.filter((c) => c.level === "error").length;
  if (errors) return `${errors} error(s): this design cannot be blinded as it stands.`;
  if (warnings) return `${warnings} warning(s): tick each one you accept; it is recorded and printed in the report with the cue it leaves.`;
  return "No confound found: nothing to acknowledge.";
}

let pending = null;
async function refresh() {
  const ticked = acknowledged();
  const body = new FormData(form);
  const response = await fetch("/studies/new/checks", {
    method: "POST", body, credentials: "same-origin", headers: { Accept: "application/json" },
  });
  const data = await response.json().catch(() => ({ detail: `error ${response.status}` }));
  if (!response.ok) {
    status.textContent = `Checks not available yet: ${data.detail}`;
    list.replaceChildren();
    arms.hidden = true;
    return;
  }
  status.textContent = describe(data);
  list.replaceChildren(...data.checks.map((check) => checkItem(check, ticked)));
  arms.querySelector("tbody").replaceChildren(...data.arms.map(armRow));
  arms.hidden = false;
}

function scheduleRefresh(event) {
  if (event && event.target.name === "acknowledge") return;
  clearTimeout(pending);
  pending = setTimeout(() => refresh().catch((error) => { status.textContent = String(error); }), 300);
}

for (const radio of radios) radio.addEventListener("change", update);
form.addEventListener("change", scheduleRefresh);
update();
if (form.querySelector('input[type="checkbox"][name$="_volumes"]:checked, input[name="arm1_healthy"]:checked')) {
  scheduleRefresh();
}
