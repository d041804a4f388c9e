// imdd review: the admins' adjudication list, a page at a time.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
let cursor = "";

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const r = await fetch(path, init);
  if (r.status === 401) { window.location.href = "/login"; throw new Error("signed out"); }
  return { status: r.status, data: r.status === 204 ? null : await r.json().catch(() => null) };
}

function show(item) {
  const node = document.getElementById("item-template").content.firstElementChild.cloneNode(true);
  node.querySelector(".thumb").src = item.image_url;
  node.querySelector(".key").textContent = item.key;
  node.querySelector(".state").textContent = item.state + " · " + item.label + " · " + (item.defect_types.join(", ") || "none");
  node.querySelector(".draft").textContent = "draft: " + (item.draft || "");
  const ul = node.querySelector(".decisions");
  for (const d of item.decisions) {
    const li = document.createElement("li");
    li.textContent = d.reviewer + ": " + d.decision + (d.reason ? " (" + d.reason + ")" : "") +
      (d.final_caption && d.final_caption !== item.draft ? " → " + d.final_caption : "");
    ul.appendChild(li);
  }
  const edited = item.decisions.find((d) => d.decision === "edit");
  node.querySelector(".final").value = edited ? edited.final_caption : (item.draft || "");
  node.querySelectorAll("[data-decision]").forEach((b) => b.addEventListener("click", async () => {
    const decision = b.dataset.decision;
    const body = { decision, version: item.version };
    if (decision === "edit") body.caption = node.querySelector(".final").value;
    if (decision === "reject") body.reason = node.querySelector(".reason").value;
    const { status, data } = await api("POST", "/api/items/" + item.key + "/adjudicate", body);
    node.querySelector(".result").textContent = status === 200 ? "done: " + (data.outcome || data.state)
                                                                 : "refused (" + status + "): " + (data && data.detail);
    if (status === 200) node.classList.add("resolved");
  }));
  document.getElementById("items").appendChild(node);
}

async function more() {
  const { status, data } = await api("GET", "/api/adjudication?limit=20&after=" + encodeURIComponent(cursor));
  if (status !== 200) return;
  data.items.forEach(show);
  if (data.items.length) cursor = data.items[data.items.length - 1].key;
  document.getElementById("more").hidden = data.items.length < 20;
}

document.getElementById("more").addEventListener("click", more);
more();
