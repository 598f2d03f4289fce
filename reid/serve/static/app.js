// The page of `reid serve`: plain JavaScript over the JSON API (/api/v1), nothing loaded from elsewhere.
"use strict";

const api = "/api/v1";
const $ = (selector) => document.querySelector(selector);
const SIDES = { vis: "visible", ir: "infrared" };
let gallery = null;
let evaluation = null;   // the evaluation view's current answer
const browsing = { offset: 0, limit: 48, total: 0 };

async function call(path, options) {
  // The API's answer as JSON; its one-line error (every error has one) is thrown as the message.
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

function modalityLine(modality) {
  return { class: `modality-${modality}`, text: SIDES[modality] || "side ?" };
}

function identityLine(pid) {
  return { class: "pid", text: pid === null || pid === undefined || pid < 0 ? "id ?" : `id ${pid}` };
}

function cameraLine(camid) {
  return { class: "camera", text: camid === null || camid === undefined || camid < 0 ? "cam ?" : `cam ${camid}` };
}

function card(src, lines, kind, enlarged, caption) {
  // One tile: a thumbnail (a click enlarges it) with its caption lines; kind is query-card, match, miss or unknown
  // (the rank-list pictures' colours).
  const image = element("img", { src, alt: caption || "" });
  image.addEventListener("click", (event) => { event.stopPropagation(); enlarge(enlarged || src, caption); });
  return element("div", { class: `card ${kind}` }, [image, ...lines.map((line) => element("div", line))]);
}

function enlarge(src, caption) {
  $("#lightbox-image").src = src;
  $("#lightbox-caption").textContent = caption || "";
  $("#lightbox").hidden = false;
}

function itemCard(item, kind, top) {
  // A gallery item (a search hit or a browsed item), labelled, with the button that searches with it.
  const lines = [identityLine(item.pid), cameraLine(item.camid), modalityLine(item.modality),
    { class: "file", text: item.file }];
  if (top) lines.unshift({ class: "score", text: `#${item.rank} · ${item.score.toFixed(3)}` });
  const caption = `item ${item.item_id}: ${item.file}, id ${item.pid ?? "?"}, camera ${item.camid ?? "?"}, ` +
    `${SIDES[item.modality] || "side unknown"}`;
  const node = card(item.thumbnail, lines, kind, item.image, caption);
  node.dataset.itemId = item.item_id;
  node.dataset.pid = item.pid;
  node.dataset.modality = item.modality;
  const other = SIDES[otherSide(item.modality)];
  const hop = element("button", { type: "button", class: "hop", text: other ? `find in ${other}` : "search" });
  hop.addEventListener("click", () => hopFrom(item).catch((error) => say(error.message, true)));
  node.appendChild(hop);
  return node;
}

function otherSide(modality) {
  return modality === "ir" ? "vis" : modality === "vis" ? "ir" : null;
}

// --- the gallery ---------------------------------------------------------------------------------------------
async function loadGallery() {
  gallery = await call("/gallery");
  const sides = Object.entries(gallery.by_modality).map(([side, count]) => `${count} ${SIDES[side] || side}`)
    .join(", ");
  const digest = gallery.checkpoint_digest ? gallery.checkpoint_digest.slice(0, 12) : "none";
  $("#gallery-info").textContent = `${gallery.items} items (${sides}) · ${gallery.backbone}, ` +
    `${gallery.embedding_size}-d · ${gallery.index_type} index · model ${digest}`;
  const cameras = $("#cameras");
  cameras.replaceChildren(element("span", { text: "Cameras" }));
  const browseCamera = $("#browse-camera");
  browseCamera.replaceChildren(element("option", { value: "", text: "any" }));
  for (const camera of gallery.cameras) {
    const box = element("input", { type: "checkbox", name: "cameras", value: String(camera) });
    box.checked = true;
    cameras.appendChild(element("label", {}, [box, document.createTextNode(` ${camera}`)]));
    browseCamera.appendChild(element("option", { value: String(camera), text: String(camera) }));
  }
  if (gallery.evaluations.length) {
    $("#tab-evaluation").hidden = false;
    const select = $("#evaluation-select");
    select.replaceChildren();
    for (const report of gallery.evaluations) {
      for (const direction of report.directions) {
        select.appendChild(element("option", { value: JSON.stringify([report.name, direction]),
          text: `${report.name} (${report.dataset}): ${direction}` }));
      }
    }
  }
}

// --- searching -----------------------------------------------------------------------------------------------
function searchForm() {
  // The form's filters; cameras only when some are unticked (all ticked means no filter).
  const form = new FormData();
  form.append("top_k", $("#top-k").value || "10");
  if ($("#modality").value) form.append("modality", $("#modality").value);
  if ($("#min-score").value !== "") form.append("min_score", $("#min-score").value);
  const boxes = [...document.querySelectorAll("#cameras input")];
  const kept = boxes.filter((box) => box.checked).map((box) => box.value);
  if (boxes.length && kept.length === 0) throw new Error("tick at least one camera");
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
  for (const hit of result.hits) {
    const kind = known === null || hit.pid === null ? "unknown" : hit.pid === known ? "match" : "miss";
    grid.appendChild(itemCard(hit, kind, true));
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  const side = `${SIDES[result.query_modality]} query`;
  if (!result.hits.length) {
    const threshold = form.get("min_score");
    say(threshold !== null ? `no match: no item scores ${threshold} or more for ${result.query} (${side})`
      : `nothing in the gallery passes the filters for ${result.query} (${side})`);
  } else {
    say(`${result.hits.length} results for ${result.query} (${side}) in ${seconds} s`);
  }
}

async function searchUpload(file) {
  const form = searchForm();
  form.append("images", file, file.name);
  const preview = card(URL.createObjectURL(file), [{ text: file.name }], "query-card", null, "the query");
  await search(form, preview);
}

async function hopFrom(item) {
  // The cross-modality hop: search with an item (never returned itself) on the other side of the gallery.
  showView("search");
  $("#query-pid").value = "";
  const other = otherSide(item.modality);
  if (other && gallery.by_modality[other]) $("#modality").value = other;  // a one-sided gallery: as it is
  const form = searchForm();
  form.append("item_id", String(item.item_id));
  if ($("#exclude-identity").checked) form.append("exclude_identity", "true");
  const preview = card(item.thumbnail, [{ text: `item ${item.item_id}` }, identityLine(item.pid),
    modalityLine(item.modality)], "query-card", item.image, "the query");
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
  $("#lightbox").addEventListener("click", () => { $("#lightbox").hidden = true; });
}

// --- browsing ------------------------------------------------------------------------------------------------
async function browse() {
  const query = new URLSearchParams({ offset: browsing.offset, limit: browsing.limit });
  if ($("#browse-modality").value) query.set("modality", $("#browse-modality").value);
  if ($("#browse-camera").value) query.set("camera", $("#browse-camera").value);
  if ($("#browse-pid").value) query.set("pid", $("#browse-pid").value);
  const page = await call(`/items?${query}`);
  browsing.total = page.total;
  const last = Math.min(page.offset + page.items.length, page.total);
  $("#browse-page").textContent = page.total ? `${page.offset + 1}-${last} of ${page.total}` : "no items";
  $("#browse-previous").disabled = page.offset === 0;
  $("#browse-next").disabled = last >= page.total;
  $("#browse-items").replaceChildren(...page.items.map((item) => itemCard(item, "unknown", false)));
}

function wireBrowse() {
  const again = () => browse().catch((error) => say(error.message, true));
  const restart = () => { browsing.offset = 0; again(); };
  for (const id of ["#browse-modality", "#browse-camera", "#browse-pid"]) $(id).addEventListener("change", restart);
  $("#browse-previous").addEventListener("click", () => {
    browsing.offset = Math.max(0, browsing.offset - browsing.limit); again();
  });
  $("#browse-next").addEventListener("click", () => { browsing.offset += browsing.limit; again(); });
}

// --- the evaluation view -------------------------------------------------------------------------------------
function evaluationPath() {
  const [name, direction] = JSON.parse($("#evaluation-select").value);
  return `/evaluations/${encodeURIComponent(name)}/${encodeURIComponent(direction)}`;
}

async function showEvaluation() {
  evaluation = await call(evaluationPath());
  $("#evaluation-warnings").textContent = evaluation.warnings.join(" · ");
  const summary = evaluation.summary;
  $("#summary tbody").replaceChildren(element("tr", {}, [
    element("td", { text: evaluation.direction }), element("td", { text: String(evaluation.trial) }),
    ...["mAP", "rank1", "rank5", "rank10", "mINP"].map((key) => element("td", {
      text: summary[key] === null ? "-" : summary[key].toFixed(2) }))]));
  listQueries();
}

function listQueries() {
  const least = Number($("#min-first-match").value || 1);
  const body = $("#queries tbody");
  body.replaceChildren();
  const shown = evaluation.queries.filter((record) => record.first_match === null || record.first_match >= least);
  for (const record of shown) {
    const row = element("tr", {}, [
      element("td", { text: String(record.query) }),
      element("td", { text: record.ap === null ? "no match" : record.ap.toFixed(2) }),
      element("td", { text: record.first_match === null ? "-" : String(record.first_match) }),
      element("td", { text: String(record.pid) }),
      element("td", { text: String(record.camid) })]);
    row.addEventListener("click", () => {
      body.querySelectorAll("tr.selected").forEach((other) => other.classList.remove("selected"));
      row.classList.add("selected");
      showQuery(record);
    });
    body.appendChild(row);
  }
  if (body.firstChild) body.firstChild.click();
  else $("#evaluation-detail").replaceChildren(element("p", { text: "no query passes the filter" }));
}

function showQuery(record) {
  const base = `${api}${evaluationPath()}/${record.query}/thumbnail`;
  const ap = record.ap === null ? "no true match" : `AP ${record.ap.toFixed(2)}%`;
  const tiles = [card(`${base}?rank=0`, [{ text: `query ${record.query}` }, identityLine(record.pid),
    cameraLine(record.camid)], "query-card", null, ap)];
  for (const item of record.top) {
    tiles.push(card(`${base}?rank=${item.rank}`, [{ text: `#${item.rank} · ${item.score.toFixed(3)}` },
      identityLine(item.pid), cameraLine(item.camid)], item.match ? "match" : "miss"));
  }
  const first = record.first_match_item;
  let where = "no true match in the gallery";
  if (first) {
    where = `first true match at rank ${first.rank}`;
    if (first.rank > record.top.length) {
      const tile = card(`${base}?rank=${first.rank}`, [{ text: `#${first.rank} · ${first.score.toFixed(3)}` },
        identityLine(first.pid), cameraLine(first.camid), { text: "first true match" }], "match");
      tile.classList.add("first-match");
      tiles.push(tile);
    }
  }
  $("#evaluation-detail").replaceChildren(
    element("p", { class: "where", text: `${evaluation.direction}, query ${record.query}: ${ap}, ${where}` }),
    element("div", { class: "grid" }, tiles));
}

function showView(name) {
  const views = { search: $("#search-view"), browse: $("#browse-view"), evaluation: $("#evaluation-view") };
  for (const [other, view] of Object.entries(views)) {
    view.hidden = other !== name;
    $(`#tab-${other}`).classList.toggle("active", other === name);
  }
}

function wireTabs() {
  $("#tab-search").addEventListener("click", () => showView("search"));
  $("#tab-browse").addEventListener("click", () => {
    showView("browse");
    browse().catch((error) => say(error.message, true));
  });
  $("#tab-evaluation").addEventListener("click", () => {
    showView("evaluation");
    showEvaluation().catch((error) => say(error.message, true));
  });
  $("#evaluation-select").addEventListener("change", () => showEvaluation().catch((e) => say(e.message, true)));
  $("#min-first-match").addEventListener("input", () => { if (evaluation) listQueries(); });
}

wireSearch();
wireBrowse();
wireTabs();
loadGallery().catch((error) => { $("#gallery-info").textContent = `could not load the gallery: ${error.message}`; });
