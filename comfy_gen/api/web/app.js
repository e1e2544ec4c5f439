// comfy-gen web page: plain DOM, no build step. User and server text only ever goes
// in through textContent / attributes set by the DOM API, never as HTML.
"use strict";

const API = "/api/v1";
const $ = (id) => document.getElementById(id);

function token() { return localStorage.getItem("comfy-gen-token") || ""; }
function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  if (token()) h["Authorization"] = "Bearer " + token();
  return h;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = authHeaders(opts.body ? { "Content-Type": "application/json" } : {});
  if (opts.body && typeof opts.body !== "string") opts.body = JSON.stringify(opts.body);
  const response = await fetch(API + path, opts);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const err = new Error(data.message || ("HTTP " + response.status));
    err.status = response.status;
    err.body = data;
    throw err;
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function showError(err) {
  const box = $("error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = err.message || String(err);
  box.hidden = false;
}

// Images come through fetch so the bearer token goes along; shown from a blob: URL.
function image(url, alt) {
  const img = el("img", { alt: alt || "" });
  fetch(url, { headers: authHeaders() })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error("image " + r.status))))
    .then((blob) => { img.src = URL.createObjectURL(blob); img.dataset.loaded = "1"; })
    .catch(() => { img.alt = "(image unavailable)"; });
  return img;
}

function safeLink(href, text) {
  // Only http(s) and our own paths become links.
  const ok = typeof href === "string" && (/^https?:\/\//i.test(href) || href.startsWith("/"));
  return ok ? el("a", { href: href, target: "_blank", rel: "noopener" }, text) : el("span", {}, text);
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// ---------------------------------------------------------------- compose
let composeSeq = 0;
async function composeUpdate() {
  const text = $("compose-input").value;
  const seq = ++composeSeq;
  const found = $("compose-found");
  if (!text.trim()) { clear(found); clear($("compose-steps")); $("compose-summary").textContent = ""; return; }
  try {
    const preview = await api("/compose/preview", { method: "POST", body: { input: text } });
    if (seq !== composeSeq) return;
    clear(found);
    for (const c of preview.explicit_categories) found.append(el("li", { dataset: { id: c.id } }, `${c.id} (explicit, ${c.type})`));
    for (const c of preview.inferred_categories) found.append(el("li", { dataset: { id: c.id } }, `${c.id} (inferred ${c.confidence}, ${c.type})`));
    for (const u of preview.unmatched_tags) found.append(el("li", { class: "muted" }, `@${u.tag}: unknown`));
    for (const v of preview.policy_violations) found.append(el("li", { class: "error" }, `${v}: not allowed at your tier`));
  } catch (err) { if (seq === composeSeq) showError(err); return; }
  try {
    const comp = await api("/compose", { method: "POST", body: { input: text, dry_run: true } });
    if (seq !== composeSeq) return;
    showError(null);
    $("compose-summary").textContent = comp.explanation.summary;
    const steps = clear($("compose-steps"));
    for (const s of comp.explanation.steps) steps.append(el("li", {}, `${s.phase}: ${s.detail}`));
    $("compose-recipe").textContent = JSON.stringify(comp.recipe, null, 2);
  } catch (err) {
    if (seq !== composeSeq) return;
    $("compose-summary").textContent = err.message;
    clear($("compose-steps"));
    $("compose-recipe").textContent = "";
  }
}

// ---------------------------------------------------------------- categories
async function loadCategories() {
  const q = $("cat-search").value.trim();
  const type = $("cat-type").value;
  const params = new URLSearchParams();
  if (q) params.set("search", q);
  if (type) params.set("type", type);
  const data = await api("/categories?" + params.toString());
  const select = $("cat-type");
  if (select.options.length === 1) for (const t of data.types) select.append(el("option", { value: t }, t));
  const list = clear($("cat-list"));
  for (const c of data.categories) {
    list.append(el("li", {}, el("a", { href: "#/categories", onclick: (e) => { e.preventDefault(); showCategory(c.id); } }, c.id),
      ` (${c.type}) ${c.display_name}: ${c.description}`));
  }
}

async function showCategory(id) {
  const data = await api("/categories/" + encodeURIComponent(id));
  $("cat-detail").textContent = JSON.stringify(data.category, null, 2);
}

// ---------------------------------------------------------------- generate
let currentJob = null;

async function startGeneration() {
  showError(null);
  const body = { prompt: $("gen-prompt").value };
  if ($("gen-workflow").value.trim()) body.workflow = $("gen-workflow").value.trim();
  if ($("gen-steps").value) body.steps = Number($("gen-steps").value);
  if ($("gen-seed").value) body.seed = Number($("gen-seed").value);
  $("gen-result").hidden = true;
  setProgress(0);
  try {
    const job = await api("/generate", { method: "POST", body: body });
    currentJob = job.generation_id;
    $("gen-cancel").disabled = false;
    $("gen-status").textContent = "queued";
    followJob(job.generation_id);
  } catch (err) { showError(err); }
}

function setProgress(percent) {
  $("gen-progress").value = percent;
  $("gen-percent").textContent = `${Math.round(percent)} %`;
}

// Server-Sent Events over fetch (EventSource cannot send the Authorization header).
async function followJob(id) {
  const response = await fetch(`${API}/generate/${encodeURIComponent(id)}/events`, { headers: authHeaders() });
  if (!response.ok) { showError(new Error("progress stream: HTTP " + response.status)); return; }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
      if (data) showJob(JSON.parse(data));
    }
  }
}

function showJob(job) {
  if (job.generation_id !== currentJob) return;
  const p = job.progress || {};
  setProgress(job.status === "completed" ? 100 : (p.percent || 0));
  let status = job.status;
  if (job.status === "running" && p.max_steps) status += ` - step ${p.step}/${p.max_steps}` + (p.node ? ` (node ${p.node})` : "");
  if (job.error) status += ": " + job.error.message;
  $("gen-status").textContent = status;
  if (["completed", "failed", "cancelled"].includes(job.status)) $("gen-cancel").disabled = true;
  if (job.status === "completed") {
    const box = clear($("gen-image"));
    box.append(image(job.image_url, "generated image"));
    const scores = job.scores ? Object.entries(job.scores).map(([k, v]) => `${k}: ${v}`).join(", ") : "not validated";
    $("gen-scores").textContent = `${job.result.status} - ${scores} - seed ${job.result.attempts.length ? job.result.attempts[job.result.attempts.length - 1].params.seed : "?"}`;
    $("gen-favorite").dataset.id = job.catalog_id || job.generation_id;
    $("gen-result").hidden = false;
  }
}

async function cancelGeneration() {
  if (currentJob) await api("/generate/" + encodeURIComponent(currentJob), { method: "DELETE" }).catch(showError);
}

async function favorite(id, rating) {
  try {
    await api("/favorites", { method: "POST", body: { generation_id: id, rating: rating || 5 } });
    showError(null);
    return true;
  } catch (err) { showError(err); return false; }
}

// ---------------------------------------------------------------- gallery and favorites
function ratingSelect(value) {
  const select = el("select", { class: "rating" });
  for (let i = 1; i <= 5; i++) {
    const opt = el("option", { value: i }, "★".repeat(i));
    if (i === (value || 5)) opt.selected = true;
    select.append(opt);
  }
  return select;
}

async function loadGallery() {
  const data = await api("/generations?limit=60");
  const grid = clear($("gallery"));
  for (const g of data.generations) {
    const id = g.generation_id || g.id;
    const rating = ratingSelect(g.rating);
    const button = el("button", { type: "button", class: "fav" }, g.favorite || g.rating ? "Update favorite" : "Favorite");
    button.addEventListener("click", async () => { if (await favorite(id, Number(rating.value))) button.textContent = "Favorited"; });
    grid.append(el("div", { class: "card", dataset: { id: id } }, image(g.thumbnail_url, g.prompt || id),
      el("div", {}, g.prompt || ""), el("div", { class: "muted" }, `${g.verdict || ""} ${g.recipe || ""}`), rating, button));
  }
  if (!data.generations.length) grid.append(el("p", { class: "muted" }, "No stored generations yet."));
}

async function loadFavorites() {
  const data = await api("/favorites?limit=100");
  const grid = clear($("favorites"));
  for (const f of data.favorites) {
    const id = f.generation_id || f.id;
    const name = el("input", { placeholder: "recipe name", class: "recipe-name", maxlength: 64 });
    const button = el("button", { type: "button", class: "extract" }, "Extract recipe");
    button.addEventListener("click", () => extractRecipe(id, name.value.trim()));
    const rating = ratingSelect(f.rating);
    rating.addEventListener("change", () => api(`/favorites/${encodeURIComponent(id)}/rating`, { method: "PUT", body: { rating: Number(rating.value) } }).catch(showError));
    const remove = el("button", { type: "button" }, "Remove");
    remove.addEventListener("click", async () => { await api("/favorites/" + encodeURIComponent(id), { method: "DELETE" }).catch(showError); loadFavorites(); });
    grid.append(el("div", { class: "card favorite", dataset: { id: id } }, image(f.thumbnail_url, id),
      el("div", {}, f.feedback || ""), rating, el("div", {}, name, button, remove)));
  }
  if (!data.favorites.length) grid.append(el("p", { class: "muted" }, "No favorites yet."));
}

async function extractRecipe(id, name) {
  const body = { preserve_loras: true, preserve_settings: true };
  if (name) body.save_as = name;
  try {
    const data = await api(`/favorites/${encodeURIComponent(id)}/extract-recipe`, { method: "POST", body: body });
    showError(null);
    $("extract-saved").textContent = data.saved ? `Saved as recipes/${data.saved.file}` : "Not saved (give it a name to save it)";
    const list = clear($("extract-adaptations"));
    for (const a of data.adaptations) list.append(el("li", {}, a));
    $("extract-yaml").textContent = JSON.stringify(data.recipe, null, 2);
    $("extract-result").hidden = false;
  } catch (err) { showError(err); }
}

// ---------------------------------------------------------------- runs
async function loadRuns(runId) {
  const recipes = await api("/recipes");
  const list = clear($("recipes"));
  for (const r of recipes.recipes) {
    const start = el("button", { type: "button" }, "Start run");
    start.addEventListener("click", async () => {
      try {
        const run = await api(`/recipes/${encodeURIComponent(r.name)}/runs`, { method: "POST", body: {} });
        location.hash = "#/runs/" + run.flow_run_id;
      } catch (err) { showError(err); }
    });
    list.append(el("li", {}, `${r.name}: ${r.description || r.error || ""} `, r.valid ? start : ""));
  }
  const data = await api("/runs?limit=30");
  const box = clear($("runs"));
  for (const run of data.runs) {
    const counts = Object.entries(run.counts || {}).map(([k, v]) => `${k} ${v}`).join(", ");
    const card = el("div", { class: "card run" }, el("a", { href: "#/runs/" + run.run_id }, `${run.recipe} ${run.run_id}`),
      el("div", {}, `${run.status} ${counts}`));
    if (run.contact_sheet_url) card.append(el("div", { class: "sheet" }, image(run.contact_sheet_url, "contact sheet")));
    if (run.prefect_url) card.append(safeLink(run.prefect_url, "Prefect run"));
    box.append(card);
  }
  const detail = clear($("run-detail"));
  if (runId) {
    const run = await api("/runs/" + encodeURIComponent(runId));
    detail.append(el("h2", {}, `Run ${run.run_id} (${run.status})`));
    if (run.prefect_url) detail.append(safeLink(run.prefect_url, "Open in Prefect"));
    if (run.contact_sheet_url) detail.append(el("div", { class: "sheet" }, image(run.contact_sheet_url, "contact sheet")));
    const items = el("div", { class: "grid" });
    for (const item of run.item_results || []) {
      items.append(el("div", { class: "card" }, item.image_url ? image(item.image_url, item.prompt || "") : "",
        el("div", {}, `${item.verdict}: ${item.prompt || ""} (seed ${item.seed})`),
        item.checks ? el("div", { class: "muted" }, item.checks) : ""));
    }
    detail.append(items);
  }
}

// ---------------------------------------------------------------- routing
const PAGES = {
  compose: () => composeUpdate(), categories: () => loadCategories(), generate: () => {},
  gallery: () => loadGallery(), favorites: () => loadFavorites(), runs: (arg) => loadRuns(arg),
};

function route() {
  const [, page, arg] = (location.hash || "#/compose").split("/");
  const name = PAGES[page] ? page : "compose";
  for (const section of document.querySelectorAll(".page")) section.classList.toggle("shown", section.id === "page-" + name);
  for (const link of document.querySelectorAll("header nav a")) link.classList.toggle("active", link.getAttribute("href") === "#/" + name);
  showError(null);
  Promise.resolve(PAGES[name](arg ? decodeURIComponent(arg) : undefined)).catch(showError);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = token();
  $("token-save").addEventListener("click", () => { localStorage.setItem("comfy-gen-token", $("token").value); route(); });
  $("compose-input").addEventListener("input", debounce(composeUpdate, 250));
  $("compose-generate").addEventListener("click", () => { $("gen-prompt").value = $("compose-input").value; location.hash = "#/generate"; });
  $("cat-search").addEventListener("input", debounce(() => loadCategories().catch(showError), 250));
  $("cat-type").addEventListener("change", () => loadCategories().catch(showError));
  $("gen-submit").addEventListener("click", startGeneration);
  $("gen-cancel").addEventListener("click", cancelGeneration);
  $("gen-favorite").addEventListener("click", async (e) => { if (await favorite(e.target.dataset.id, 5)) e.target.textContent = "Favorited"; });
  window.addEventListener("hashchange", route);
  route();
});
