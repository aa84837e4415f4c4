// The model picker of the segmentation forms: available models first, the others greyed out
// under "download (admin page)" for admins or "not here: ask an admin" for everyone else.

import { API, getJSON } from "./api.js";
import { el } from "./ui.js";

/**
 * Fill a <select> with the registered models and choose the demo model (or the first one here).
 * @param {HTMLSelectElement} select
 * @returns {Promise<{model: string|null, problem: string}>} the chosen model (null when none is
 *   here) and, when none is, what to do about it
 */
export async function loadModelPicker(select) {
  const answer = await getJSON(`${API}/models`);
  const models = answer.items;
  const local = models.filter((model) => model.status === "local");
  const others = models.filter((model) => model.status !== "local");
  const missing = answer.can_pull ? "download on the admin page" : "ask an admin";
  const groups = [el("optgroup", { label: "available" }, ...local.map((model) => el("option", { value: model.name }, `${model.name} (${model.arch})`)))];
  if (others.length) {
    groups.push(
      el(
        "optgroup",
        { label: answer.can_pull ? "download (admin page)" : "not here: ask an admin" },
        ...others.map((model) => el("option", { value: model.name, disabled: true }, `${model.name} (${model.arch}: ${missing})`)),
      ),
    );
  }
  select.replaceChildren(...groups);
  const preferred = local.find((model) => model.name === "demo") || local[0];
  if (preferred) {
    select.value = preferred.name;
    return { model: preferred.name, problem: "" };
  }
  const problem = answer.can_pull
    ? `No model is available here yet: download one on the admin page (${answer.pull_page}).`
    : "No model is available here yet: ask an admin to download one.";
  return { model: null, problem };
}
