// lightpost console: draws /api/state, then applies the server-sent changes of /api/events.
// No framework, no CDN: every element is built with textContent (no HTML from data).
"use strict";
(function () {
  const LEVELS = ["signed", "included", "final", "complete"];
  const S = { version: 0, fleet: new Map(), series: new Map(), events: new Map(),
    counts: {}, commands: new Map(), cost: null, status: {}, commandsEnabled: false };
  const dirty = new Set();
  let source = null;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  const svg = (tag, attrs) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  const short = (h) => (h && h.length > 14 ? h.slice(0, 8) + "\u2026" + h.slice(-4) : h || "");
  const ago = (t) => (t == null ? "never" : Math.max(0, Math.round(Date.now() / 1000 - t)) + " s ago");
  const eth = (wei) => (wei == null ? "?" : (wei / 1e18).toFixed(4) + " ETH");
  const badge = (lvl) => el("span", { class: "badge lvl-" + lvl }, lvl);
  const nameOf = (address) => { const d = S.fleet.get(address); return d ? d.name : short(address); };

  function load() {
    fetch("/api/state", { credentials: "same-origin" }).then((r) => r.json()).then((st) => {
      S.version = st.version; S.status = st.status; S.counts = st.counts; S.cost = st.cost;
      S.commandsEnabled = !!st.commands_enabled;
      S.fleet = new Map(st.fleet.map((d) => [d.address, d]));
      S.series = new Map(st.series.map((x) => [x.s, x.points]));
      S.events = new Map(st.events.map((e) => [e.id, e]));
      S.commands = new Map(st.commands.map((c) => [c.id, c]));
      ["fleet", "charts", "events", "commands", "cost", "status"].forEach((x) => dirty.add(x));
      schedule(); listen();
    }).catch(() => { setStatus("down", "console unreachable, retrying"); setTimeout(load, 3000); });
  }

  function listen() {
    if (source) source.close();
    source = new EventSource("/api/events?since=" + S.version);
    source.onopen = () => setStatus("live", "live");
    source.onerror = () => setStatus("down", "reconnecting");
    source.addEventListener("reset", () => { source.close(); load(); });
    source.onmessage = (msg) => { S.version = Number(msg.lastEventId); apply(JSON.parse(msg.data)); };
  }

  function apply(ch) {
    const d = ch.data;
    switch (ch.kind) {
      case "device": S.fleet.set(d.address, d); dirty.add("fleet"); break;
      case "point": {
        const pts = S.series.get(d.s) || [];
        const p = { k: d.k, t: d.t, v: d.v, lvl: d.lvl, r: d.r };
        const i = pts.findIndex((x) => x.k === d.k);
        if (i >= 0) pts[i] = p; else { pts.push(p); if (pts.length > 240) pts.shift(); }
        S.series.set(d.s, pts); dirty.add("charts"); break;
      }
      case "event": S.events.set(d.id, d); dirty.add("events"); break;
      case "counts": S.counts = d; dirty.add("events"); break;
      case "command": S.commands.set(d.id, d); dirty.add("commands"); break;
      case "cost": S.cost = d; dirty.add("cost"); break;
      case "status": S.status = d; dirty.add("status"); break;
    }
    schedule();
  }

  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const todo = [...dirty]; dirty.clear();
      for (const x of todo) ({ fleet: drawFleet, charts: drawCharts, events: drawEvents,
        commands: drawCommands, cost: drawCost, status: drawStatus })[x]();
    });
  }

  function setStatus(state, text) {
    const s = document.getElementById("status"); s.dataset.state = state; s.textContent = text;
  }
  function drawStatus() {
    const st = S.status || {};
    if (st.follower && st.follower !== "following") setStatus("down", "follower: " + st.follower);
    const h = st.heads || {};
    document.getElementById("heads").textContent =
      h.latest != null ? "block " + h.latest + " \u00b7 final " + h.final : "";
  }

  function drawFleet() {
    const rows = [...S.fleet.values()].map((d) => el("tr",
      { "data-address": d.address, class: d.silent ? "silent" : null },
      el("td", {}, el("strong", {}, d.name), el("br"), el("span", { class: "mono" }, short(d.address))),
      el("td", {}, d.role),
      el("td", { class: "seen" }, ago(d.last_seen)),
      el("td", { class: "mono" }, d.last_reading || "\u2014"),
      el("td", { class: "highest" }, d.highest ? badge(d.highest) : "\u2014"),
      el("td", {}, d.silent ? "SILENT (cadence " + d.cadence_s + " s)" :
        d.cadence_s != null ? "ok (every ~" + d.cadence_s + " s)" : "\u2014"),
      el("td", {}, eth(d.balance_wei)),
      el("td", {}, d.outbox ? (Object.entries(d.outbox).map(([k, v]) => v + " " + k).join(", ") || "none") : "unknown")));
    document.getElementById("fleet-rows").replaceChildren(...rows);
  }

  function drawCharts() {
    const box = document.getElementById("charts");
    const charts = [];
    for (const [sid, pts] of S.series) {
      const [channel, sender, field] = sid.split("|");
      charts.push(chart(sid, nameOf(sender) + " \u00b7 " + channel + " \u00b7 " + field, pts));
    }
    box.replaceChildren(...charts);
  }

  function chart(sid, title, pts) {
    const W = 300, H = 120, P = 18;
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
    if (pts.length) {
      const ts = pts.map((p) => p.t), vs = pts.map((p) => p.v);
      const t0 = Math.min(...ts), t1 = Math.max(...ts), v0 = Math.min(...vs), v1 = Math.max(...vs);
      const x = (t) => P + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (W - 2 * P);
      const y = (v) => H - P - (v1 > v0 ? (v - v0) / (v1 - v0) : 0.5) * (H - 2 * P);
      s.append(svg("polyline", { points: pts.map((p) => x(p.t) + "," + y(p.v)).join(" ") }));
      for (const p of pts) {
        const lvl = p.r ? "retracted" : p.lvl;
        const c = svg("circle", { cx: x(p.t), cy: y(p.v), r: 3.2, class: "lvl-" + lvl,
          "data-key": p.k, "data-level": lvl });
        const tip = svg("title", {}); tip.textContent = p.v + " (" + lvl + ")"; c.append(tip);
        c.addEventListener("click", () => proof(p.k));
        s.append(c);
      }
      const a = svg("text", { x: 2, y: 10, class: "axis" }); a.textContent = String(v1);
      const b = svg("text", { x: 2, y: H - 4, class: "axis" }); b.textContent = String(v0);
      s.append(a, b);
    }
    return el("div", { class: "chart", "data-series": sid }, el("h3", {}, title), s);
  }

  function proof(key) {
    const body = document.getElementById("proof-body");
    body.replaceChildren(el("p", {}, "loading proof trail\u2026"));
    document.getElementById("proof").showModal();
    fetch("/api/proof?key=" + encodeURIComponent(key)).then((r) => r.json()).then((t) => {
      if (t.error) { body.replaceChildren(el("p", {}, t.error)); return; }
      const dl = el("dl", {});
      const row = (k, v) => dl.append(el("dt", {}, k), el("dd", {}, v));
      row("device", t.device); row("channel \u00b7 seq", t.channel + " #" + t.seq);
      row("message", t.payload); row("transaction", el("span", { class: "mono" }, t.tx_hash));
      row("block", t.block_number + " " + t.block_hash);
      row("block time", new Date(t.block_timestamp * 1000).toISOString());
      for (const l of t.levels) row("reached " + l.level, new Date(l.at * 1000).toISOString());
      if (t.retracted) row("retracted", "its block left the chain (reorg)");
      if (t.endpoints) {
        row("endpoints that agree on the block", t.endpoints.agreed.join(", ") || "none");
        if (t.endpoints.differ.length) row("endpoints that differ", t.endpoints.differ.join(", "));
        if (t.endpoints.no_answer.length) row("no answer", t.endpoints.no_answer.join(", "));
      }
      for (const e of t.events) row("caught", e.title + " \u00d7" + e.count);
      body.replaceChildren(el("h3", {}, "proof trail"), dl);
    });
  }

  function drawEvents() {
    const evs = [...S.events.values()].sort((a, b) => b.last_t - a.last_t || b.id - a.id);
    document.getElementById("events").replaceChildren(...evs.map((e) => el("li",
      { "data-kind": e.kind, "data-endpoints": e.endpoints.join(" ") },
      el("div", { class: "title" }, e.title + (e.count > 1 ? " \u00d7" + e.count : "")),
      el("div", { class: "meta" }, [new Date(e.last_t * 1000).toLocaleTimeString(),
        e.device ? "device " + (S.fleet.has(e.device) ? nameOf(e.device) : e.device) : null,
        e.channel, e.seq != null ? "seq " + e.seq : null,
        e.block_number != null ? "block " + e.block_number : null,
        e.tx_hash ? "tx " + short(e.tx_hash) : null].filter(Boolean).join(" \u00b7 ")),
      el("div", { class: "evidence" }, e.details))));
    const kinds = [...new Set(Object.values(S.counts).flatMap((c) => Object.keys(c)))].sort();
    const table = document.getElementById("counts");
    if (!kinds.length) { table.replaceChildren(el("tr", {}, el("td", {}, "no integrity events yet"))); return; }
    table.replaceChildren(el("tr", {}, el("th", {}, "endpoint"), ...kinds.map((k) => el("th", {}, k))),
      ...Object.entries(S.counts).map(([ep, c]) => el("tr", { "data-endpoint": ep },
        el("td", {}, ep), ...kinds.map((k) => el("td", {}, c[k] || 0)))));
  }

  function drawCommands() {
    document.getElementById("command-form").hidden = !S.commandsEnabled;
    const rows = [...S.commands.values()].map((c) => {
      const top = LEVELS.filter((l) => c.levels && l in c.levels).pop();
      const r = c.result;
      return el("tr", { "data-command": c.id },
        el("td", {}, c.command_seq), el("td", { class: "mono" }, c.command || "?"),
        el("td", {}, c.target || "?"),
        el("td", {}, top ? badge(top) : (c.state || "\u2014"), c.tx_hash ? " " + short(c.tx_hash) : ""),
        el("td", {}, c.device_level || "its agent's min_level"),
        el("td", { class: r ? (r.status === "executed" ? "ok" : "bad") : null }, r ? r.status + " (" + r.reason + ")" : (c.state || "")),
        el("td", {}, r ? el("span", {}, "from " + r.from + " at ", badge(r.level), " " + short(r.tx_hash) + (r.output ? " \u00b7 " + r.output : "")) : "\u2014"));
    });
    document.getElementById("command-rows").replaceChildren(...rows);
  }

  function drawCost() {
    const c = S.cost, box = document.getElementById("cost-body");
    if (!c || !c.devices.length) { box.replaceChildren(el("p", {}, "no transactions measured yet")); return; }
    const fmt = (n) => (n == null ? "?" : Number(n).toLocaleString());
    const proj = (p) => (p ? fmt(p.gas_per_day) + " gas/day = " + eth(p.wei_per_day) + "/day, " + eth(p.wei_per_month) + "/month" : "needs a longer window");
    box.replaceChildren(
      el("p", {}, "per reading: ", el("strong", { id: "per-reading" }, fmt(c.per_reading) + " gas"),
        " batched vs ", el("strong", {}, fmt(c.paper_per_reading) + " gas"),
        " as one transaction per reading (same gas schedule), over " + fmt(c.readings) + " readings"),
      el("p", {}, "at base fee " + fmt(c.base_fee_wei) + " wei, over the last " + c.window_s + " s: lightpost " + proj(c.projection) + "; one tx per reading " + proj(c.paper_projection)),
      el("div", { class: "scroll" }, el("table", {},
        el("tr", {}, ...["device", "gas", "txs", "messages", "gas/message", "one tx per message"].map((h) => el("th", {}, h))),
        ...c.devices.map((d) => el("tr", {}, el("td", {}, d.name), el("td", {}, fmt(d.gas)), el("td", {}, d.txs),
          el("td", {}, d.messages), el("td", {}, fmt(d.per_message)), el("td", {}, fmt(d.paper_per_message)))))));
  }

  function setupForm() {
    const form = document.getElementById("command-form");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const target = document.getElementById("cmd-target").value.trim();
      const name = document.getElementById("cmd-name").value.trim();
      const args = document.getElementById("cmd-args").value.trim().split(/\s+/).filter(Boolean);
      const text = name + " " + args.join(" ") + " -> " + target;
      if (!window.confirm("Sign and send this command with the controller's key?\n\n" + text)) return;
      const fb = document.getElementById("cmd-feedback");
      fb.textContent = "sending\u2026";
      fetch("/api/command", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Lightpost-Confirm": "yes" },
        body: JSON.stringify({ target, name, args, confirm: true }) })
        .then((r) => r.json()).then((res) => {
          fb.textContent = res.error ? "refused: " + res.error : "queued as command #" + res.command_seq;
        });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupForm(); load();
    setInterval(() => { dirty.add("fleet"); schedule(); }, 5000);  // "last seen" ages
  });
})();
