"use strict";
// The operator page: the same REST API as curl, no framework. It signs in
// once (HttpOnly session cookie) and echoes the CSRF cookie on changes.

const ladder = { viewer: 1, technician: 2, operator: 3, approver: 1, admin: 4 };
const app = { me: null, timer: null, route: "", info: {} };

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)mf_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  const res = await fetch(path, { method, headers, credentials: "same-origin",
    body: body !== undefined ? JSON.stringify(body) : undefined });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401 && path !== "/api/v1/session") { showSignIn(); }
  if (!res.ok) { const e = new Error(data.error || res.statusText); e.status = res.status; throw e; }
  return data;
}

// h builds an element: attributes (on* are listeners) and children.
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) el.append(k);
  return el;
}

function pill(state) { return h("span", { class: "state s-" + (state || "none"), "data-state": state || "" }, state || "—"); }
function fmt(ts) { return ts ? new Date(ts).toLocaleString() : ""; }
function dur(ms) {
  if (ms < 0 || isNaN(ms)) return "";
  const s = Math.round(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
// inStep is a time in step as the fleet shows it: 42s, 4m 12s, 3h 05m.
function inStep(ms) {
  if (ms < 0 || isNaN(ms)) return "";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 172800) return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}
// Cells carrying data-since count up every second between refreshes, so
// a stuck server's time in step visibly grows.
setInterval(() => {
  for (const el of document.querySelectorAll("[data-since]")) el.textContent = inStep(Date.now() - Number(el.dataset.since));
}, 1000);
function may(role) {
  if (!app.me) return false;
  if (role === "approver") return app.me.role === "approver" || app.me.role === "admin";
  return (ladder[app.me.role] || 0) >= ladder[role];
}
// put replaces an element's children, leaving out the null and false that
// optional parts of a page evaluate to.
function put(el, ...kids) { el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false)); }
function enc(s) { return encodeURIComponent(s); }
function view(...kids) { put(document.getElementById("view"), ...kids); }
function msg(id) { return h("p", { class: "msg", id, role: "status" }); }
function say(el, text, ok) { el.textContent = text; el.className = "msg " + (ok ? "ok" : "error"); }

// --- signing in -------------------------------------------------------------

function showSignIn() {
  app.me = null;
  stopPolling();
  document.getElementById("signin-page").hidden = false;
  document.getElementById("nav").hidden = true;
  document.getElementById("me").hidden = true;
  view();
}

async function whoami() {
  try {
    app.me = await api("GET", "/api/v1/whoami");
  } catch (e) { showSignIn(); return false; }
  document.getElementById("signin-page").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("me").hidden = false;
  document.getElementById("whoami").textContent = app.me.user + " · " + app.me.role;
  document.getElementById("whoami").dataset.role = app.me.role;
  for (const a of document.querySelectorAll("[data-need]")) a.hidden = !may(a.dataset.need);
  api("GET", "/api/v1/info").then((info) => {
    app.info = info;
    const a = document.getElementById("temporal-link");
    if (info.temporalUrl) { a.href = info.temporalUrl; a.hidden = false; }
  }).catch(() => {});
  return true;
}

document.getElementById("signin").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = document.getElementById("signin-msg");
  const token = ev.target.token.value.trim();
  if (!token) { say(out, "Enter your API token.", false); return; }
  try {
    await api("POST", "/api/v1/session", { token });
    ev.target.token.value = "";
    out.textContent = "";
    if (await whoami()) route();
  } catch (e) { say(out, e.message, false); }
});

document.getElementById("signout").addEventListener("click", async () => {
  await api("DELETE", "/api/v1/session").catch(() => {});
  showSignIn();
});

// --- live refresh -----------------------------------------------------------

// Each page registers one refresh; it runs every few seconds while the tab
// is visible, so a technician watching a rack sees progress without reloading.
function poll(fn) {
  stopPolling();
  app.refresh = fn;
  const tick = async () => {
    if (document.hidden || app.refresh !== fn) return;
    try { await fn(); } catch (e) { /* the next tick tries again */ }
  };
  app.timer = setInterval(tick, 3000);
  return tick();
}
function stopPolling() { if (app.timer) clearInterval(app.timer); app.timer = null; app.refresh = null; }
document.addEventListener("visibilitychange", () => { if (!document.hidden && app.refresh) app.refresh().catch(() => {}); });

// --- fleet ------------------------------------------------------------------

// The list has no step times, sites or errors: ask each server, but a
// server whose lifecycle has ended only once, so a settled fleet costs one
// request per refresh and the API's per-client rate limit is not spent.
const settled = new Map();
const live = ["provisioning", "attention", "waiting-rack", "decommissioning", "waiting-unrack"];
async function serverDetails(list) {
  return Promise.all(list.map(async (s) => {
    const known = settled.get(s.serial);
    if (known && known.state === s.state) return known;
    const d = await api("GET", "/api/v1/servers/" + enc(s.serial)).catch(() => null);
    if (d && !live.includes(d.state)) settled.set(s.serial, d);
    return d;
  }));
}

function stepStart(st) {
  const cur = (st.steps || []).find((x) => x.name === st.step && x.startedAt && !x.finishedAt)
    || (st.steps || []).filter((x) => x.startedAt).pop();
  return cur && cur.startedAt ? new Date(cur.startedAt) : null;
}

function decisionButtons(serial, att, after) {
  const out = msg("act-" + serial);
  const act = async (what, body) => {
    try {
      await api("POST", "/api/v1/servers/" + enc(serial) + "/" + what, body);
      say(out, what + " sent", true);
      if (after) await after();
    } catch (e) { say(out, e.message, false); }
  };
  const btns = [];
  if (may("technician")) btns.push(h("button", { type: "button", "data-action": "retry", onclick: () => act("retry", {}) }, "Retry"));
  if (may("operator") && att.skippable) btns.push(h("button", { type: "button", class: "secondary", "data-action": "skip", onclick: () => act("skip", {}) }, "Skip " + att.step));
  if (may("operator")) btns.push(h("button", { type: "button", class: "danger", "data-action": "abort", onclick: () => {
    const reason = prompt("Why abort " + serial + "?");
    if (reason) act("abort", { reason });
  } }, "Abort"));
  if (!btns.length) return h("p", { class: "muted" }, "A technician or operator answers this.");
  return h("div", {}, h("div", { class: "actions" }, btns), out);
}

async function fleetPage() {
  const filt = { state: "", site: "", rack: "" };
  const attention = h("section", { class: "attention", id: "attention", hidden: true });
  const body = h("tbody", { id: "fleet-rows" });
  const sel = (name, label) => h("label", {}, label, h("select", { name, id: "filter-" + name, onchange: (e) => { filt[name] = e.target.value; draw(); } }, h("option", { value: "" }, "all")));
  const filters = h("div", { class: "filters" }, sel("state", "State"), sel("site", "Site"), sel("rack", "Rack"));
  view(h("h2", {}, "Fleet"), attention, h("section", {}, filters,
    h("table", { class: "wide", id: "fleet" }, h("thead", {}, h("tr", {}, ...["Serial", "State", "Step", "Time in step", "Site", "Rack"].map((x) => h("th", {}, x)))), body),
    h("p", { class: "empty", id: "fleet-empty", hidden: true }, "No servers yet.")));
  let rows = [];
  const fill = (name, values) => {
    const s = document.getElementById("filter-" + name);
    if (!s) return;
    const have = new Set([...s.options].map((o) => o.value));
    for (const v of [...new Set(values)].filter((v) => v && !have.has(v)).sort()) s.append(h("option", { value: v }, v));
  };
  function draw() {
    const shown = rows.filter((r) => (!filt.state || r.state === filt.state) && (!filt.site || r.site === filt.site) && (!filt.rack || r.rack === filt.rack));
    shown.sort((a, b) => (a.state === "attention" ? 0 : 1) - (b.state === "attention" ? 0 : 1) || a.serial.localeCompare(b.serial));
    put(body, ...shown.map((r) => h("tr", { "data-serial": r.serial, "data-state": r.state },
      h("td", {}, h("a", { href: "#/servers/" + enc(r.serial) }, r.serial)), h("td", {}, pill(r.state)),
      h("td", {}, r.step || ""), r.since ? h("td", { class: "in-step", "data-since": String(r.since.getTime()) }, inStep(Date.now() - r.since)) : h("td", { class: "in-step" }, ""),
      h("td", {}, r.site || ""), h("td", {}, r.rack || ""))));
    document.getElementById("fleet-empty").hidden = rows.length > 0;
  }
  await poll(async () => {
    const list = (await api("GET", "/api/v1/servers")).servers || [];
    const det = await serverDetails(list);
    rows = list.map((s, i) => {
      const d = det[i] || {};
      const state = d.state || s.state;
      // The list's stepStartedAt (a search attribute) first; older runs
      // only have their step timeline.
      const at = d.stepStartedAt || s.stepStartedAt;
      const since = !live.includes(state) ? null : at ? new Date(at) : d.steps ? stepStart(d) : null;
      return { serial: s.serial, state, step: d.step || s.step, rack: (d.location && d.location.rack) || s.rack,
        site: d.location && d.location.site, since, attention: d.attention };
    });
    fill("state", rows.map((r) => r.state)); fill("site", rows.map((r) => r.site)); fill("rack", rows.map((r) => r.rack));
    const att = rows.filter((r) => r.state === "attention" && r.attention);
    attention.hidden = att.length === 0;
    put(attention, h("h3", {}, "Needs attention (" + att.length + ")"), ...att.map((r) =>
      h("div", { class: "item", "data-serial": r.serial },
        h("a", { href: "#/servers/" + enc(r.serial) }, h("strong", {}, r.serial)), " at ", h("strong", {}, r.attention.step),
        h("div", { class: "error" }, r.attention.error), decisionButtons(r.serial, r.attention, () => app.refresh && app.refresh()))));
    draw();
  });
}

// --- racks ------------------------------------------------------------------

async function racksPage() {
  const racks = (await api("GET", "/api/v1/racks")).racks || [];
  const bySite = {};
  for (const r of racks) (bySite[r.site] = bySite[r.site] || []).push(r);
  view(h("h2", {}, "Racks"), ...Object.keys(bySite).sort().map((site) => h("section", { class: "racks-list" },
    h("h3", {}, site), ...bySite[site].map((r) => h("a", { href: "#/racks/" + enc(r.site) + "/" + enc(r.name) }, r.name + " · " + r.heightU + " U")))),
    racks.length ? null : h("p", { class: "empty" }, "No racks in the inventory."));
}

async function rackPage(site, name) {
  const pic = h("div", { class: "rack", id: "rack" });
  view(h("h2", {}, "Rack " + site + " / " + name), h("section", {}, h("p", { class: "muted", id: "rack-meta" }), pic));
  await poll(async () => {
    const r = await api("GET", "/api/v1/racks/" + enc(site) + "/" + enc(name));
    const states = {};
    const list = (await api("GET", "/api/v1/servers")).servers || [];
    for (const s of list) states[s.serial] = s.state;
    const used = {};
    for (const u of r.units || []) used[u.unit] = u.serial;
    document.getElementById("rack-meta").textContent = (r.room ? "room " + r.room + " · " : "") + r.heightU + " U · " + Object.keys(used).length + " occupied";
    const units = [];
    for (let u = r.heightU; u >= 1; u--) {
      const serial = used[u];
      const st = serial ? states[serial] : "";
      units.push(h("div", { class: "unit" + (serial ? " used s-" + (st || "none") : ""), "data-unit": u, "data-serial": serial || null },
        h("span", { class: "no" }, "U" + u), h("span", { class: "who" }, serial ? h("a", { href: "#/servers/" + enc(serial) }, serial + (st ? " · " + st : "")) : "")));
    }
    put(pic, ...units);
  });
}

// --- server page --------------------------------------------------------------

// Mirrors workflows.ValidateLocation: names are letters, digits, '.', '_',
// '-', starting with a letter or digit, at most 32; unit 1 or more; face
// front or rear. The rack's height and free units come from the inventory.
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
function isName(s) { return s.length >= 1 && s.length <= 32 && namePattern.test(s); }

function field(label, input) {
  return h("label", {}, label, input, h("span", { class: "field-error", "data-for": input.name, role: "alert" }));
}
function setFieldError(form, name, text) {
  const el = form.querySelector('.field-error[data-for="' + name + '"]');
  if (el) el.textContent = text || "";
  if (form.elements[name]) form.elements[name].classList.toggle("invalid", !!text);
}

async function validateLocation(form, serial) {
  const loc = { site: form.site.value.trim(), room: form.room.value.trim(), rack: form.rack.value.trim(), unit: Number(form.unit.value), face: form.face.value };
  const errs = {};
  if (!isName(loc.site)) errs.site = "site is required (letters, digits, '.', '_', '-'; at most 32)";
  if (loc.room && !isName(loc.room)) errs.room = "room may contain only letters, digits, '.', '_', '-' (at most 32)";
  if (!isName(loc.rack)) errs.rack = "rack is required (letters, digits, '.', '_', '-'; at most 32)";
  if (!Number.isInteger(loc.unit) || loc.unit < 1) errs.unit = "unit must be 1 or more";
  if (loc.face !== "front" && loc.face !== "rear") errs.face = "face must be front or rear";
  if (!errs.site && !errs.rack && !errs.unit) {
    try {
      const r = await api("GET", "/api/v1/racks/" + enc(loc.site) + "/" + enc(loc.rack));
      const taken = (r.units || []).find((u) => u.unit === loc.unit && u.serial !== serial);
      if (loc.unit > r.heightU) errs.unit = "rack " + r.name + " has " + r.heightU + " units; unit " + loc.unit + " is above it";
      else if (taken) errs.unit = "unit " + loc.unit + " is taken by " + taken.serial;
      if (r.room && loc.room && r.room !== loc.room) errs.room = "rack " + r.name + " is in room " + r.room;
    } catch (e) {
      if (e.status === 404) errs.rack = "no rack " + loc.rack + " at site " + loc.site;
    }
  }
  for (const n of ["site", "room", "rack", "unit", "face"]) setFieldError(form, n, errs[n]);
  return Object.keys(errs).length ? null : loc;
}

function locationFields(prefix) {
  return [
    field("Site", h("input", { name: "site", value: "dc1", autocomplete: "off" })),
    field("Room", h("input", { name: "room", autocomplete: "off" })),
    field("Rack", h("input", { name: "rack", autocomplete: "off" })),
    field("Unit", h("input", { name: "unit", type: "number", min: "1", inputmode: "numeric" })),
    field("Face", h("select", { name: "face" }, h("option", { value: "front" }, "front"), h("option", { value: "rear" }, "rear"))),
  ];
}

function rackedForm(serial, after) {
  const out = msg("racked-msg");
  const form = h("form", { id: "racked", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    const loc = await validateLocation(form, serial);
    if (!loc) { say(out, "Fix the fields marked above.", false); return; }
    if (!loc.room) delete loc.room;
    try {
      await api("POST", "/api/v1/servers/" + enc(serial) + "/racked", loc);
      say(out, "Racked " + serial + " at " + loc.site + "/" + loc.rack + " U" + loc.unit + ".", true);
      if (after) await after();
    } catch (e) {
      // The API has the last word (another server may have taken the unit).
      say(out, e.message, false);
    }
  } }, h("h3", {}, "Racked"), h("p", { class: "muted" }, "Where did you put " + serial + "?"),
  ...locationFields(), h("div", {}, h("button", { type: "submit" }, "Confirm racked")), out);
  return form;
}

function stepRows(steps) {
  return (steps || []).map((s) => h("tr", { "data-step": s.name, "data-status": s.status },
    h("td", {}, s.name), h("td", {}, pill(s.status)), h("td", {}, fmt(s.startedAt)), h("td", {}, fmt(s.finishedAt)),
    h("td", {}, s.startedAt ? dur((s.finishedAt ? new Date(s.finishedAt) : new Date()) - new Date(s.startedAt)) : ""),
    h("td", { class: s.error ? "error" : "muted" }, s.error || s.note || "")));
}

function dl(pairs) {
  return h("dl", {}, ...pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
}

function hardwareSection(st, asset) {
  const hw = (asset && asset.hardware) || {};
  const kids = [h("h3", {}, "Hardware")];
  kids.push(dl([["Vendor", (st.hardware && st.hardware.vendor) || (asset && asset.vendor)], ["Model", (st.hardware && st.hardware.model) || (asset && asset.model)],
    ["Profile", st.hardware && st.hardware.profile], ["Role", st.hardware && st.hardware.role], ["CPU", hw.cpuArch],
    ["Cores / threads", hw.totalCores ? hw.totalCores + " / " + hw.totalThreads : ""], ["Memory", hw.memoryGiB ? hw.memoryGiB + " GiB" : ""],
    ["BIOS version", hw.biosVersion], ["BMC firmware", hw.bmcFirmware], ["BMC", asset && asset.bmcAddress],
    ["MACs", ((st.hardware && st.hardware.macs) || (asset && asset.macs) || []).join(", ")]]));
  if ((hw.cpus || []).length) kids.push(h("h4", {}, "CPUs"), h("ul", {}, ...hw.cpus.map((c) => h("li", {}, c.model + " · " + c.cores + " cores / " + c.threads + " threads"))));
  if ((hw.drives || []).length) kids.push(h("h4", {}, "Drives"), h("ul", {}, ...hw.drives.map((d) => h("li", {}, d.id + " " + (d.model || "") + " " + Math.round(d.capacityBytes / 1e9) + " GB " + (d.mediaType || "")))));
  if ((hw.nics || []).length) kids.push(h("h4", {}, "NICs"), h("ul", {}, ...hw.nics.map((n) => h("li", {}, n.id + " " + n.mac))));
  if ((hw.firmware || []).length) kids.push(h("h4", {}, "Firmware"), h("ul", {}, ...hw.firmware.map((f) => h("li", {}, f.name + " " + f.version))));
  // What the BMC would not give: the lists above are partial there.
  const warnings = (st.hardware && st.hardware.warnings) || hw.warnings || [];
  if (warnings.length) kids.push(h("h4", {}, "Not read from the BMC"), h("ul", { id: "inventory-warnings" }, ...warnings.map((w) => h("li", {}, w.path + ": " + w.error))));
  // BIOS and RAID: what the BMC showed after the last ConfigureBIOS /
  // ConfigureRAID, against the profile; the step's outcome beside it.
  const conf = (st.steps || []).filter((s) => s.name === "ConfigureBIOS" || s.name === "ConfigureRAID");
  if (conf.length) kids.push(h("h4", {}, "BIOS / RAID against profile " + ((st.hardware && st.hardware.profile) || "")),
    h("ul", { id: "bios-raid" }, ...conf.map((s) => h("li", {}, s.name + ": ", pill(s.status), " ", s.error || s.note || ""))));
  if (st.bios) kids.push(biosTable(st.bios));
  if (st.raid) kids.push(raidTable(st.raid));
  return h("section", { id: "hardware" }, ...kids);
}

function verdict(ok, text) { return h("span", { class: ok ? "ok" : "error", "data-verdict": text }, ok ? "✓" : "✗" + (text ? " " + text : "")); }

// biosTable is each desired attribute against the BMC's value; the API
// sends "(hidden)" for password-like ones.
function biosTable(r) {
  const rows = (r.attributes || []).map((a) => h("tr", { "data-attribute": a.name, "data-match": String(a.match) },
    h("td", {}, a.name), h("td", { "data-label": "desired" }, a.desired), h("td", { "data-label": "actual" }, a.missing ? "(none)" : a.actual),
    h("td", {}, a.missing ? verdict(false, "missing") : verdict(a.match, ""))));
  return h("div", { id: "bios-report" }, h("h4", {}, "BIOS: applied vs desired"), h("table", { class: "wide" },
    h("thead", {}, h("tr", {}, ...["Attribute", "Desired", "Actual", ""].map((x) => h("th", {}, x)))), h("tbody", {}, ...rows)));
}

function raidTable(r) {
  const vol = (v) => v ? [v.name || v.id || "", v.raidLevel, v.sizeBytes ? bytes(v.sizeBytes) : "MAX", (v.drives || []).join(", ") || "any"] : ["", "", "", ""];
  const rows = (r.volumes || []).map((v) => {
    const d = vol(v.desired), a = vol(v.actual);
    if (v.actual && v.actual.sizeBytes === 0) a[2] = "0 B";
    // Labels stand in for the header on a tablet, where rows wrap.
    const dl = ["desired", "level", "size", "drives"], al = ["found", "level", "size", "drives"];
    return h("tr", { "data-status": v.status }, ...d.map((x, i) => h("td", { "data-label": v.desired ? dl[i] : null }, x)),
      ...a.map((x, i) => h("td", { "data-label": v.actual ? al[i] : null }, x)),
      h("td", {}, v.status === "match" ? verdict(true, "") : verdict(false, v.status)));
  });
  return h("div", { id: "raid-report" }, h("h4", {}, "RAID: applied vs desired" + (r.controller ? " (controller " + r.controller + ")" : "")), h("table", { class: "wide" },
    h("thead", {}, h("tr", {}, ...["Desired", "Level", "Size", "Drives", "Found", "Level", "Size", "Drives", ""].map((x) => h("th", {}, x)))), h("tbody", {}, ...rows)));
}

async function serverPage(serial) {
  const top = h("section", { id: "server-top" });
  const timeline = h("tbody", { id: "steps" });
  const extra = h("div", {});
  const racked = h("div", { id: "racked-slot" });
  view(h("h2", {}, "Server " + serial), top, racked,
    h("section", {}, h("h3", {}, "Steps"), h("table", { class: "wide" }, h("thead", {}, h("tr", {}, ...["Step", "Status", "Started", "Finished", "Duration", "Error / note"].map((x) => h("th", {}, x)))), timeline)), extra);
  let formShown = false;
  await poll(async () => {
    const st = await api("GET", "/api/v1/servers/" + enc(serial));
    const asset = await api("GET", "/api/v1/servers/" + enc(serial) + "/asset").catch(() => null);
    const loc = st.location;
    const since = st.step && st.stepStartedAt ? new Date(st.stepStartedAt).getTime() : null;
    put(top, h("p", {}, h("strong", {}, st.serial), " ", h("span", { id: "server-state" }, pill(st.state)), " ", st.step ? "at " + st.step : "",
      since ? [" for ", h("span", { id: "server-in-step", "data-since": String(since) }, inStep(Date.now() - since))] : null),
      dl([["Location", loc ? loc.site + (loc.room ? "/" + loc.room : "") + "/" + loc.rack + " U" + loc.unit + " " + loc.face : "not racked"],
        ["Install attempt", st.installAttempt], ["Tenant", st.tenant], ["Pools", (st.pools || []).join(", ")], ["Workflow", st.workflowId]]),
      st.temporalUrl ? h("p", {}, h("a", { id: "temporal-run", href: st.temporalUrl, target: "_blank", rel: "noopener" }, "This run in the Temporal Web UI")) : null,
      st.attention ? h("div", { class: "attention", id: "server-attention" }, h("p", { class: "error" }, st.attention.step + ": " + st.attention.error),
        decisionButtons(serial, st.attention, () => app.refresh && app.refresh())) : null,
      st.decommission ? h("p", { id: "decommission" }, "Decommission: ", pill(st.decommission.state), " ", st.decommission.step || "") : null);
    if (st.state === "waiting-rack" && may("technician")) {
      if (!formShown) { put(racked, h("section", {}, rackedForm(serial, () => app.refresh && app.refresh()))); formShown = true; }
    } else if (formShown && !document.querySelector("#racked-msg.error")) { put(racked); formShown = false; }
    put(timeline, ...stepRows(st.steps));
    const parts = [hardwareSection(st, asset)];
    if (st.deploy) parts.unshift(deploySection(st.deploy));
    if (st.decommission) {
      const d = await api("GET", "/api/v1/servers/" + enc(serial) + "/decommission").catch(() => null);
      if (d) parts.push(h("section", { id: "decommission-steps" }, h("h3", {}, "Decommission ", pill(d.state)),
        h("table", { class: "wide" }, h("tbody", {}, ...stepRows(d.steps)))));
    }
    if (asset) parts.push(h("section", { id: "history" }, h("h3", {}, "Asset history"),
      h("table", { class: "wide" }, h("tbody", {}, ...(asset.history || []).map((c) => h("tr", {}, h("td", {}, fmt(c.at)), h("td", {}, c.actor), h("td", {}, c.action), h("td", {}, c.detail || "")))))));
    put(extra, ...parts);
  });
}

// deploySection is metalflow's deploy of an image: each phase with its
// time from power-on, and the bytes written while the image is.
function deploySection(d) {
  const t0 = d.powerOnAt ? new Date(d.powerOnAt).getTime() : null;
  const since = (at) => at && t0 !== null ? "+" + Math.round((new Date(at).getTime() - t0) / 1000) + " s" : "";
  const written = d.imageMiBPerSecond ? "image written at " + d.imageMiBPerSecond.toFixed(1) + " MiB/s" +
    (d.diskLimitMiBPerSecond ? " (disk: " + d.diskLimitMiBPerSecond.toFixed(1) + " MiB/s)" : "") : "image written";
  const phases = [["power-on", d.powerOnAt], ["agent up", d.agentUpAt], [written, d.writtenAt], ["reboot from disk", d.rebootAt], ["phone home", d.phoneHomeAt]];
  const kids = [h("h3", {}, "Deploy of " + d.image + " (attempt " + d.attempt + ") ", pill(d.phase)),
    h("table", { class: "wide" }, h("tbody", { id: "deploy-phases" }, ...phases.map(([name, at]) =>
      h("tr", { "data-phase": name, "data-done": String(!!at) }, h("td", {}, name), h("td", {}, at ? fmt(at) : ""), h("td", {}, since(at))))))];
  if (d.bytesTotal && !d.writtenAt) {
    kids.push(h("p", { id: "deploy-progress" }, h("progress", { max: String(d.bytesTotal), value: String(d.bytesWritten || 0) }),
      " " + bytes(d.bytesWritten || 0) + " of " + bytes(d.bytesTotal) + (d.disk ? " to " + d.disk : "")));
  }
  return h("section", { id: "deploy" }, ...kids);
}

// --- register -----------------------------------------------------------------

function registerPage() {
  const out = msg("register-msg");
  const form = h("form", { id: "register", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const body = { serial: f.serial.value.trim() };
    let bad = false;
    const serialOK = body.serial.length <= 64 && namePattern.test(body.serial);
    setFieldError(form, "serial", serialOK ? "" : "serial: letters, digits, '.', '_', '-', starting with a letter or digit (at most 64)");
    bad = !serialOK;
    const addr = f.address.value.trim();
    if (addr || f.username.value || f.password.value) {
      const addrOK = /^https?:\/\/[^/?#]+\/?$/.test(addr);
      setFieldError(form, "address", addrOK ? "" : "BMC address: scheme https (or http), then host[:port], no path");
      setFieldError(form, "username", f.username.value ? "" : "BMC user is required with an address");
      setFieldError(form, "password", f.password.value ? "" : "BMC password is required with an address");
      bad = bad || !addrOK || !f.username.value || !f.password.value;
      body.bmc = { address: addr, username: f.username.value, password: f.password.value };
    }
    if (f.profile.value.trim()) body.profile = f.profile.value.trim();
    if (f.rack.value.trim() || f.unit.value) {
      const loc = await validateLocation(form, body.serial);
      if (!loc) bad = true;
      else { if (!loc.room) delete loc.room; body.location = loc; }
    } else for (const n of ["site", "room", "rack", "unit", "face"]) setFieldError(form, n, "");
    if (bad) { say(out, "Fix the fields marked above.", false); return; }
    try {
      await api("POST", "/api/v1/servers", body);
      say(out, "Registered " + body.serial + ".", true);
      out.append(" ", h("a", { href: "#/servers/" + enc(body.serial), id: "registered-link" }, "Open " + body.serial));
    } catch (e) { say(out, e.message, false); }
  } },
  h("h3", {}, "Server"), field("Serial", h("input", { name: "serial", autocomplete: "off", maxlength: "64" })),
  field("Profile (optional)", h("input", { name: "profile", autocomplete: "off", placeholder: "picked by vendor" })),
  h("h3", {}, "BMC"), field("Address", h("input", { name: "address", autocomplete: "off", placeholder: "https://10.0.0.21" })),
  field("User", h("input", { name: "username", autocomplete: "off" })), field("Password", h("input", { name: "password", type: "password", autocomplete: "new-password" })),
  h("h3", {}, "Location (optional: leave the rack empty to rack it later)"), ...locationFields(),
  h("div", {}, h("button", { type: "submit", disabled: !may("operator") }, "Register")), out);
  stopPolling();
  view(h("h2", {}, "Register a server"), h("section", {}, form));
}

// --- VIPs ---------------------------------------------------------------------

async function vipsPage() {
  const body = h("tbody", { id: "vip-rows" });
  view(h("h2", {}, "VIPs"), h("section", {}, h("table", { class: "wide" },
    h("thead", {}, h("tr", {}, ...["Name", "Address", "Exposure", "State", "Requested by", "Approved by"].map((x) => h("th", {}, x)))), body),
  h("p", { class: "empty", id: "vips-empty", hidden: true }, "No VIPs.")));
  await poll(async () => {
    const vips = (await api("GET", "/api/v1/vips")).vips || [];
    document.getElementById("vips-empty").hidden = vips.length > 0;
    put(body, ...vips.map((v) => h("tr", { "data-vip": v.name }, h("td", {}, h("a", { href: "#/vips/" + enc(v.name) }, v.name)),
      h("td", {}, v.address || ""), h("td", {}, v.exposure), h("td", {}, pill(v.state), v.awaitingApproval ? " awaiting approval" : ""),
      h("td", {}, v.requestedBy || ""), h("td", {}, v.approvedBy || ""))));
  });
}

function approveButtons(name, after) {
  const out = msg("approve-" + name);
  if (!may("approver")) return h("div", {}, h("p", { class: "muted" }, "An approver decides."));
  const act = async (what, body) => {
    try { await api("POST", "/api/v1/vips/" + enc(name) + "/" + what, body); say(out, what + "d", true); if (after) await after(); }
    catch (e) { say(out, e.message, false); }
  };
  return h("div", {}, h("div", { class: "actions" },
    h("button", { type: "button", "data-action": "approve", onclick: () => act("approve") }, "Approve"),
    h("button", { type: "button", class: "danger", "data-action": "reject", onclick: () => { const r = prompt("Why reject " + name + "?"); if (r !== null) act("reject", { reason: r }); } }, "Reject")), out);
}

// decisionsFor keeps each VIP's approve/reject block (and the answer shown
// under it) across a page's redraws: a refusal wiped by the next refresh
// a few seconds later would go unread.
function decisionsFor() {
  const kept = new Map();
  return (name) => {
    if (!kept.has(name)) kept.set(name, approveButtons(name, () => app.refresh && app.refresh()));
    return kept.get(name);
  };
}

function bytes(n) { return n >= 1e9 ? (n / 1e9).toFixed(1) + " GB" : n >= 1e6 ? (n / 1e6).toFixed(1) + " MB" : n >= 1e3 ? (n / 1e3).toFixed(1) + " kB" : n + " B"; }

// Traffic counters ask every LB node the VIP is on, so the page polls the
// VIP without them and refreshes them every 30 s, or when asked.
const countersEvery = 30000;

async function vipPage(name) {
  const box = h("div", { id: "vip" });
  const countersMsg = h("span", { class: "muted", id: "vip-counters-at" });
  const refreshBtn = h("button", { type: "button", class: "secondary", id: "vip-refresh-counters", onclick: () => { lastCounters = 0; app.refresh && app.refresh(); } }, "Refresh counters");
  view(h("h2", {}, "VIP " + name), h("p", { class: "actions" }, refreshBtn, " ", countersMsg), box);
  let lastCounters = 0, traffic = null;
  const decisions = decisionsFor();
  await poll(async () => {
    const want = Date.now() - lastCounters >= countersEvery;
    const v = await api("GET", "/api/v1/vips/" + enc(name) + (want ? "" : "?counters=false"));
    if (want) {
      lastCounters = Date.now();
      traffic = v.traffic || null;
      countersMsg.textContent = "Counters as of " + new Date(lastCounters).toLocaleTimeString() + (traffic ? "" : " (the nodes did not answer)");
      countersMsg.dataset.refreshedAt = String(lastCounters);
    }
    const t = traffic || { nodes: [], total: { packets: 0, bytes: 0 } };
    const perBackend = {};
    for (const n of t.nodes || []) for (const b of n.backends || []) {
      const x = perBackend[b.address] = perBackend[b.address] || { packets: 0, bytes: 0 };
      x.packets += b.counter.packets; x.bytes += b.counter.bytes;
    }
    put(box, 
      h("section", {}, h("p", {}, h("strong", {}, v.name), " ", h("span", { id: "vip-state" }, pill(v.state)), " ", v.address || "", " ", v.protocol || "", " ", (v.ports || []).join(", ")),
        dl([["Exposure", v.exposure], ["Announce", v.announce], ["Requested by", v.requestedBy], ["Approved by", v.approvedBy], ["Traffic", t.total.packets + " packets, " + bytes(t.total.bytes)]]),
        v.temporalUrl ? h("p", {}, h("a", { href: v.temporalUrl, target: "_blank", rel: "noopener" }, "This VIP's run in the Temporal Web UI")) : null,
        (v.warnings || []).map((w) => h("p", { class: "error" }, w)),
        v.attention ? h("div", { class: "attention", id: "vip-attention" }, h("p", { class: "error" }, v.attention.step + ": " + v.attention.error)) : null,
        // Until it is placed there is nothing an approver could let out.
        v.awaitingApproval && v.state !== "attention" ? h("div", { id: "vip-approval" }, h("p", {}, "Public: awaiting approval."), decisions(v.name)) : null,
        v.awaitingApproval && v.state === "attention" ? h("p", { class: "muted", id: "vip-approval-later" }, "Public: an approver decides once it is placed.") : null),
      h("section", { id: "placement" }, h("h3", {}, "Placement"), (v.placement || []).length ? h("div", { class: "grid" }, ...v.placement.map((c) =>
        h("div", {}, h("h4", {}, c.cluster + " · failure domain " + c.failureDomain), h("table", {}, h("tbody", {}, ...(c.nodes || []).map((n) => {
          const tn = (t.nodes || []).find((x) => x.node === n.node && x.cluster === c.cluster);
          return h("tr", {}, h("td", {}, n.node), h("td", {}, pill(n.state)), h("td", { class: "traffic" }, tn ? tn.counter.packets + " pkts " + bytes(tn.counter.bytes) : ""), h("td", { class: "error" }, tn && tn.error || ""));
        })))))) : h("p", { class: "empty" }, "Not placed on any load-balancer node.")),
      h("section", { id: "backends" }, h("h3", {}, "Backends"), h("table", { class: "wide" },
        h("thead", {}, h("tr", {}, ...["Address", "Server", "Weight", "State", "Health", "Traffic"].map((x) => h("th", {}, x)))),
        h("tbody", {}, ...(v.backends || []).map((b) => h("tr", {}, h("td", {}, b.address), h("td", {}, b.serial ? h("a", { href: "#/servers/" + enc(b.serial) }, b.serial) : ""),
          h("td", {}, String(b.weight)), h("td", {}, b.state || ""), h("td", {}, pill(b.health), (b.downOn || []).length ? " down on " + b.downOn.join(", ") : ""),
          h("td", { class: "traffic" }, perBackend[b.address] ? perBackend[b.address].packets + " pkts " + bytes(perBackend[b.address].bytes) : "")))))));
  });
}

async function approvalsPage() {
  const box = h("section", { id: "approvals" });
  view(h("h2", {}, "Approvals"), box);
  const decisions = decisionsFor();
  await poll(async () => {
    const vips = ((await api("GET", "/api/v1/vips")).vips || []).filter((v) => v.state === "awaiting-approval");
    put(box, ...(vips.length ? vips.map((v) => h("div", { class: "item", "data-vip": v.name },
      h("p", {}, h("a", { href: "#/vips/" + enc(v.name) }, h("strong", {}, v.name)), " ", v.address || "", " requested by ", v.requestedBy || "?"),
      decisions(v.name))) : [h("p", { class: "empty", id: "approvals-empty" }, "No public VIPs await approval.")]));
  });
}

// --- routing ------------------------------------------------------------------

async function route() {
  if (!app.me) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const page = parts[0] || "fleet";
  for (const a of document.querySelectorAll("nav a[data-nav]")) a.classList.toggle("active", a.dataset.nav === page);
  stopPolling();
  try {
    if (page === "racks" && parts[2]) await rackPage(parts[1], parts[2]);
    else if (page === "racks") await racksPage();
    else if (page === "servers" && parts[1]) await serverPage(parts[1]);
    else if (page === "register") registerPage();
    else if (page === "vips" && parts[1]) await vipPage(parts[1]);
    else if (page === "vips") await vipsPage();
    else if (page === "approvals") await approvalsPage();
    else await fleetPage();
  } catch (e) {
    if (e.status !== 401) view(h("section", {}, h("p", { class: "msg error", id: "page-error" }, e.message)));
  }
}

window.addEventListener("hashchange", route);
whoami().then((ok) => { if (ok) route(); });
