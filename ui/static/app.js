"use strict";
// The operator page talks to the same REST API as curl does; no framework.

// The token lives in this tab's session storage only: closing the tab
// signs out, and no cookie rides along with cross-site requests.
function token() { return sessionStorage.getItem("metalflow-token") || ""; }

async function api(method, path, body) {
  const headers = body ? { "Content-Type": "application/json" } : {};
  if (token()) headers.Authorization = "Bearer " + token();
  const res = await fetch(path, {
    method,
    headers,
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function say(id, text, ok) {
  const el = document.getElementById(id);
  el.textContent = text;
  el.className = "msg " + (ok ? "ok" : "error");
}

function fmt(ts) { return ts ? new Date(ts).toLocaleString() : ""; }

let current = null;

async function show(serial) {
  const s = await api("GET", "/api/v1/servers/" + encodeURIComponent(serial));
  current = serial;
  document.getElementById("server").hidden = false;
  document.getElementById("srv-serial").textContent = s.serial;
  document.getElementById("srv-state").textContent = s.state;
  const run = document.getElementById("srv-run");
  run.hidden = !s.temporalUrl;
  run.href = s.temporalUrl || "#";
  const body = document.getElementById("srv-steps");
  body.replaceChildren(...s.steps.map((st) => {
    const tr = document.createElement("tr");
    for (const v of [st.name, st.status, fmt(st.startedAt), fmt(st.finishedAt), st.error || ""]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  }));
  document.getElementById("racked").hidden = s.state !== "waiting-rack";
}

document.getElementById("register").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const serial = ev.target.serial.value.trim();
  try {
    await api("POST", "/api/v1/servers", { serial });
    say("register-msg", "Registered " + serial + "; waiting to be racked.", true);
    await show(serial);
  } catch (e) { say("register-msg", e.message, false); }
});

document.getElementById("lookup").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { await show(ev.target.serial.value.trim()); say("racked-msg", "", true); }
  catch (e) { document.getElementById("server").hidden = true; say("register-msg", e.message, false); }
});

document.getElementById("racked").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  const loc = { site: f.site.value.trim(), room: f.room.value.trim(), rack: f.rack.value.trim(), unit: Number(f.unit.value), face: f.face.value };
  try {
    await api("POST", "/api/v1/servers/" + encodeURIComponent(current) + "/racked", loc);
    say("racked-msg", "Racked.", true);
    await show(current);
  } catch (e) { say("racked-msg", e.message, false); }
});

async function whoami() {
  const el = document.getElementById("whoami");
  try {
    const me = await api("GET", "/api/v1/whoami");
    el.textContent = "Signed in as " + me.user + " (" + me.role + (me.project ? ", project " + me.project : "") + ")";
  } catch (e) { el.textContent = "Not signed in: " + e.message; }
}

document.getElementById("signin").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("metalflow-token", ev.target.token.value.trim());
  ev.target.token.value = "";
  await whoami();
});

whoami();
api("GET", "/api/v1/info").then((info) => {
  if (info.temporalUrl) {
    const a = document.getElementById("temporal-link");
    a.href = info.temporalUrl;
    a.hidden = false;
  }
}).catch(() => {});
