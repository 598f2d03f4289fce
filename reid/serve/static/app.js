// The page of `reid serve`: plain JavaScript over the JSON API (/api/v1), nothing loaded from elsewhere.
"use strict";

const api = "/api/v1";
const $ = (selector) => document.querySelector(selector);
let gallery = null;

async function call(path, options) {
  // The API's answer as JSON; its one-line error (every 4xx has one) is thrown as the message.
  const response = await fetch(api + path, options);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function say(message, isError = false) {
  const status = $("#status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.appendChild(child);
  return node;
}

function card(src, lines, kind, title) {
  // One thumbnail with its caption; kind is query, match, miss or unknown (the rank-list pictures' colours).
  const caption = lines.map((line) => element("div", line));
  return element("div", { class: `card ${kind}`, title: title || "" }, [element("img", { src, alt: title || "" }),
    ...caption]);
}

function modalityLine(modality) {
  return { class: `modality-${modality}`, text: modality === "ir" ? "infrared" : "visible" };
}

// --- the gallery ---------------------------------------------------------------------------------------------
async function loadGallery() {
  gallery = await call("/gallery");
  const sides = Object.entries(gallery.by_modality).map(([side, count]) => `${count} ${side}`).join(", ");
  $("#gallery-info").textContent = `${gallery.items} items (${sides}) · ${gallery.backbone}, ` +
    `${gallery.embedding_size}-d · ${gallery.index_type} index · model ${gallery.checkpoint_digest.slice(0, 12)}`;
  const cameras = $("#cameras");
  cameras.replaceChildren(element("span", { text: "Cameras " }));
  for (const camera of gallery.cameras) {
    const box = element("input", { type: "checkbox", name: "cameras", value: String(camera) });
    box.checked = true;
    cameras.appendChild(element("label", {}, [box, document.createTextNode(` ${camera}`)]));
  }
  if (gallery.evaluations.length) {
    $("#tab-evaluation").hidden = false;
    const select = $("#evaluation-select");
    select.replaceChildren();
    gallery.evaluations.forEach((evaluation, number) => {
      for (const direction of evaluation.directions) {
        select.appendChild(element("option", { value: `${number}/${direction}`,
          text: `${evaluation.name} (${evaluation.dataset}): ${direction}` }));
      }
    });
  }
}

// --- searching -----------------------------------------------------------------------------------------------
function searchForm() {
  // The form's filters; cameras only when some are unticked (all ticked means no filter).
  const form = new FormData();
  form.append("top_k", $("#top-k").value || "10");
  if ($("#modality").value) form.append("modality", $("#modality").value);
  const boxes = [...document.querySelectorAll("#cameras input")];
  const kept = boxes.filter((box) => box.checked).map((box) => box.value);
  if (kept.length === 0) throw new Error("tick at least one camera");
  if (kept.length < boxes.length) kept.forEach((camera) => form.append("cameras", camera));
  return form;
}

async function search(form, queryCard) {
  say("searching...");
  $("#query").replaceChildren(queryCard);
  $("#results").replaceChildren();
  const started = performance.now();
  const answer = await call("/search", { method: "POST", body: form });
  const result = answer.results[0];
  const typed = $("#query-pid").value;
  const known = result.query_pid ?? (typed === "" ? null : Number(typed));
  const grid = $("#results");
  result.hits.forEach((hit, rank) => {
    const kind = known === null || hit.pid < 0 ? "unknown" : hit.pid === known ? "match" : "miss";
    const node = card(hit.thumbnail, [
      { text: `#${rank + 1} · ${hit.score.toFixed(3)}` },
      { class: "pid", text: hit.pid >= 0 ? `id ${hit.pid}` : "id ?" },
      { text: hit.camid >= 0 ? `cam ${hit.camid}` : "cam ?" },
      modalityLine(hit.modality)], kind, `item ${hit.item_id}: click to search with it`);
    node.dataset.itemId = hit.item_id;
    node.dataset.pid = hit.pid;
    node.dataset.modality = hit.modality;
    node.addEventListener("click", () => hop(hit).catch((error) => say(error.message, true)));
    grid.appendChild(node);
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  say(`${result.hits.length} results for ${result.query} (${result.query_modality === "ir" ? "infrared" :
    "visible"} query) in ${seconds} s`);
}

async function searchUpload(file) {
  const form = searchForm();
  form.append("images", file, file.name);
  const preview = card(URL.createObjectURL(file), [{ text: file.name }], "query-card", "the query");
  await search(form, preview);
}

async function hop(hit) {
  // The cross-modality hop: search with a result, on the other side of the gallery.
  const form = searchForm();
  $("#query-pid").value = "";
  const other = hit.modality === "ir" ? "vis" : "ir";
  if (gallery.by_modality[other]) form.set("modality", other);  // a one-sided gallery is searched as it is
  $("#modality").value = form.get("modality") || "";
  form.append("item_id", String(hit.item_id));
  const preview = card(hit.thumbnail, [{ text: `item ${hit.item_id}` }, { text: `id ${hit.pid}` },
    modalityLine(hit.modality)], "query-card", "the query");
  await search(form, preview);
}

function wireSearch() {
  const input = $("#image");
  const drop = $("#drop");
  const run = (file) => searchUpload(file).catch((error) => say(error.message, true));
  input.addEventListener("change", () => { if (input.files.length) run(input.files[0]); });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) run(event.dataTransfer.files[0]);
  });
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.files.length) run(input.files[0]);
    else say("drop or pick an image first", true);
  });
}

// --- the evaluation view -------------------------------------------------------------------------------------
async function showEvaluation() {
  const [number, direction] = $("#evaluation-select").value.split("/");
  const answer = await call(`/evaluations/${number}/${direction}`);
  const body = $("#queries tbody");
  body.replaceChildren();
  for (const record of answer.queries) {
    const row = element("tr", {}, [
      element("td", { text: String(record.query) }),
      element("td", { text: record.ap === null ? "no match" : record.ap.toFixed(2) }),
      element("td", { text: record.first_match === null ? "-" : String(record.first_match) }),
      element("td", { text: String(record.pid) }),
      element("td", { text: String(record.camid) })]);
    row.addEventListener("click", () => {
      body.querySelectorAll("tr.selected").forEach((other) => other.classList.remove("selected"));
      row.classList.add("selected");
      showQuery(number, direction, record);
    });
    body.appendChild(row);
  }
  if (body.firstChild) body.firstChild.click();
}

function showQuery(number, direction, record) {
  const base = `${api}/evaluations/${number}/${direction}/${record.query}/thumbnail`;
  const ap = record.ap === null ? "no true match" : `AP ${record.ap.toFixed(2)}%`;
  const tiles = [card(`${base}?rank=0`, [{ text: `query ${record.query}` }, { text: `id ${record.pid}` },
    { text: `cam ${record.camid}` }], "query-card", ap)];
  for (const item of record.top) {
    tiles.push(card(`${base}?rank=${item.rank}`, [{ text: `#${item.rank} · ${item.score.toFixed(3)}` },
      { text: `id ${item.pid}` }, { text: `cam ${item.camid}` }], item.match ? "match" : "miss"));
  }
  const detail = $("#evaluation-detail");
  detail.replaceChildren(element("p", { text: `${direction}, query ${record.query}: ${ap}, first true match at ` +
    `rank ${record.first_match ?? "-"}` }), element("div", { class: "grid" }, tiles));
}

function wireTabs() {
  const views = { search: $("#search-view"), evaluation: $("#evaluation-view") };
  for (const name of Object.keys(views)) {
    $(`#tab-${name}`).addEventListener("click", () => {
      for (const [other, view] of Object.entries(views)) {
        view.hidden = other !== name;
        $(`#tab-${other}`).classList.toggle("active", other === name);
      }
      if (name === "evaluation") showEvaluation().catch((error) => say(error.message, true));
    });
  }
  $("#evaluation-select").addEventListener("change", () => showEvaluation().catch((e) => say(e.message, true)));
}

wireSearch();
wireTabs();
loadGallery().catch((error) => { $("#gallery-info").textContent = `could not load the gallery: ${error.message}`; });
