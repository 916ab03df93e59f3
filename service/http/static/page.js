// The page of `aigc serve`: pick, drop or paste pictures; each is sent to POST v1/check (this
// service, relative URL) and gets a card. Everything the service returns is put on the page
// with textContent or as attribute values, never parsed as HTML.
"use strict";

(() => {
  const KEY_STORE = "aigc-api-key";
  const LANG_STORE = "aigc-lang";
  const LANGS = ["en", "zh"];
  const VERDICTS = ["generated", "partly_generated", "likely_generated", "captured", "no_evidence"];
  const ui = {
    lang: "en",
    strings: {},
    fallback: {},
    info: null,
    cards: [],
    queue: [],
    busy: false,
    keyRequired: false,
    keyNote: "",
    pasted: 0,
  };
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ strings and elements

  async function loadStrings(lang) {
    const r = await fetch(`static/strings-${lang}.json`, { cache: "no-cache" });
    if (!r.ok) throw new Error(`strings-${lang}.json: ${r.status}`);
    return r.json();
  }

  // The string `key` with {name} replaced by vars[name]: text, or a node put in as it is.
  function tn(key, vars = {}) {
    const text = ui.strings[key] ?? ui.fallback[key] ?? key;
    const out = document.createDocumentFragment();
    for (const part of text.split(/(\{[a-z_]+\})/)) {
      const name = part.startsWith("{") && part.endsWith("}") ? part.slice(1, -1) : null;
      const value = name !== null && name in vars ? vars[name] : part;
      out.append(value instanceof Node ? value : String(value));
    }
    return out;
  }

  function t(key, vars = {}) {
    return tn(key, vars).textContent;
  }

  function has(key) {
    return key in ui.strings || key in ui.fallback;
  }

  // el("p", {class: "x"}, "text", node): attributes by name, children as text or nodes
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function num(value, digits = 2) {
    return new Intl.NumberFormat(ui.lang, { maximumFractionDigits: digits }).format(value);
  }

  function applyStrings() {
    document.documentElement.lang = ui.lang === "zh" ? "zh-CN" : "en";
    document.title = t("page_title");
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    for (const node of document.querySelectorAll("[data-i18n-attr]")) {
      const [attr, key] = node.dataset.i18nAttr.split(":");
      node.setAttribute(attr, t(key));
    }
    for (const button of document.querySelectorAll("[data-lang]")) {
      button.setAttribute("aria-pressed", String(button.dataset.lang === ui.lang));
    }
    $("key-state").textContent = ui.keyNote ? t(ui.keyNote) : "";
  }

  function keyNote(key) {
    ui.keyNote = key;
    $("key-state").textContent = key ? t(key) : "";
  }

  async function setLang(lang) {
    ui.strings = lang === "en" ? ui.fallback : await loadStrings(lang);
    ui.lang = lang;
    try {
      localStorage.setItem(LANG_STORE, lang);
    } catch (_) {
      // storage may be off: the switch still works for this visit
    }
    applyStrings();
    for (const card of ui.cards) render(card);
    showStatus();
  }

  // ------------------------------------------------------------------ the API key

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || "";
    } catch (_) {
      return $("key-input").value.trim();
    }
  }

  function headers() {
    const key = apiKey();
    return key ? { "X-API-Key": key } : {};
  }

  function askForKey(why) {
    ui.keyRequired = true;
    $("key").hidden = false;
    if (why) keyNote(why);
  }

  function saveKey(event) {
    event.preventDefault();
    const key = $("key-input").value.trim();
    try {
      if (key) sessionStorage.setItem(KEY_STORE, key);
      else sessionStorage.removeItem(KEY_STORE);
    } catch (_) {
      // no session storage: the field itself is read
    }
    keyNote(key ? "key_saved" : "key_cleared");
    ui.info = null;
    fetchInfo();
    for (const card of ui.cards) {
      if (card.error && card.error.status === 401) retry(card);
    }
  }

  // ------------------------------------------------------------------ talking to the service

  async function errorOf(response) {
    let message = "";
    try {
      message = (await response.json()).error.message || "";
    } catch (_) {
      message = response.statusText || "";
    }
    return {
      status: response.status,
      message,
      retryAfter: response.headers.get("Retry-After"),
    };
  }

  async function post(path, file, name) {
    const body = new FormData();
    body.append("file", file, name);
    return fetch(path, { method: "POST", body, headers: headers() });
  }

  async function fetchInfo(attempt = 0) {
    if (ui.info) return;
    let response;
    try {
      response = await fetch("v1/info", { headers: headers() });
    } catch (_) {
      return;
    }
    if (response.ok) {
      ui.info = await response.json();
      for (const card of ui.cards) if (card.result) render(card);
    } else if (response.status === 401) {
      askForKey(apiKey() ? "key_wrong" : "key_needed");
    } else if (response.status === 503 && attempt < 60) {
      setTimeout(() => fetchInfo(attempt + 1), 2000); // models still loading
    }
  }

  // ------------------------------------------------------------------ cards and the queue

  function addFiles(files) {
    for (const file of files) {
      const card = {
        file,
        name: file.name || "picture",
        url: URL.createObjectURL(file),
        state: "waiting",
        result: null,
        error: null,
        node: el("article", { class: "card", "aria-busy": "true" }),
      };
      ui.cards.push(card);
      ui.queue.push(card);
      $("cards").prepend(card.node);
      render(card);
    }
    showStatus();
    pump();
  }

  // One check at a time: the service works on one picture at a time anyway, and a page that
  // sent twenty at once would only fill its queue and be told to come back.
  async function pump() {
    if (ui.busy) return;
    const card = ui.queue.shift();
    if (!card) {
      showStatus();
      return;
    }
    ui.busy = true;
    card.state = "checking";
    render(card);
    showStatus();
    try {
      const response = await post("v1/check", card.file, card.name);
      if (response.ok) {
        card.result = await response.json();
        card.state = "done";
      } else {
        card.error = await errorOf(response);
        card.state = "error";
        if (card.error.status === 401) askForKey(apiKey() ? "key_wrong" : "key_needed");
      }
    } catch (_) {
      card.error = { status: 0, message: "", retryAfter: null };
      card.state = "error";
    }
    render(card);
    ui.busy = false;
    pump();
  }

  function retry(card) {
    dropWorks(card);
    card.error = null;
    card.state = "waiting";
    if (!ui.queue.includes(card)) ui.queue.push(card);
    render(card);
    pump();
  }

  function showStatus() {
    const total = ui.cards.length;
    const left = ui.queue.length + (ui.busy ? 1 : 0);
    const status = $("status");
    if (!total) status.textContent = "";
    else if (left) status.textContent = t("status_working", { left, total });
    else status.textContent = t("status_done", { total });
  }

  function render(card) {
    const node = card.node;
    node.replaceChildren();
    node.dataset.state = card.state;
    node.setAttribute("aria-busy", String(card.state === "waiting" || card.state === "checking"));
    node.className = "card";
    const verdict = card.result && card.result.summary ? card.result.summary.verdict : null;
    if (verdict && VERDICTS.includes(verdict)) node.classList.add(`v-${verdict}`);
    node.append(el("h2", { class: "name" }, card.name));
    const body = el("div", { class: "card-body" }, picture(card));
    if (card.state === "done") body.append(summaryOf(card.result));
    else if (card.state === "error") body.append(errorBox(card));
    else body.append(el("p", { class: "working" }, t(card.state === "checking" ? "checking" : "waiting")));
    node.append(body);
    if (card.state === "done") {
      node.append(evidence(card), downloads(card));
    }
  }

  function picture(card) {
    const img = el("img", { src: card.url, alt: t("alt_picture", { name: card.name }) });
    const canvas = el("canvas", { class: "outline", "aria-hidden": "true" });
    const frame = el("div", { class: "frame" }, img, canvas);
    const caption = el("figcaption", { class: "muted" }, sizeText(card.file.size));
    img.addEventListener("load", () => {
      caption.textContent = `${img.naturalWidth} × ${img.naturalHeight} px · ${sizeText(card.file.size)}`;
      drawRegion(card, canvas, img);
    });
    img.addEventListener("error", () => frame.classList.add("broken"));
    return el("figure", { class: "pic" }, frame, caption);
  }

  function sizeText(bytes) {
    if (bytes < 1024) return t("bytes", { n: bytes });
    if (bytes < 1024 * 1024) return t("kib", { n: num(bytes / 1024, 0) });
    return t("mib", { n: num(bytes / 1024 / 1024, 1) });
  }

  // the top registered work's outline in the picture, when the match was verified
  function drawRegion(card, canvas, img) {
    const sim = card.result && card.result.similarity;
    const match = sim && sim.matches && sim.matches.find((m) => Array.isArray(m.region));
    if (!match) return;
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.lineWidth = Math.max(3, img.naturalWidth / 150);
    ctx.strokeStyle = "#d4002a";
    ctx.beginPath();
    match.region.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.stroke();
  }

  function summaryOf(result) {
    const s = result.summary;
    const box = el(
      "div",
      { class: "verdict" },
      el("p", { class: "badge" }, t(`verdict_${s.verdict}`)),
      el("p", {}, t(`verdict_${s.verdict}_more`)),
    );
    if (s.decided_by.length) {
      const names = s.decided_by.map((n) => (has(`signal_${n}`) ? t(`signal_${n}`) : n));
      box.append(el("p", { class: "muted" }, t("decided_by", { signals: names.join(", ") })));
    }
    box.append(
      el("h3", {}, t("reasons")),
      el("ul", { class: "reasons" }, s.reasons.map((r) => el("li", {}, r))),
    );
    if (ui.lang !== "en") box.append(el("p", { class: "muted small" }, t("reasons_english")));
    return box;
  }

  function errorBox(card) {
    const e = card.error;
    let key = `error_${e.status}`;
    if (e.status === 503 && e.retryAfter) key = "error_503_busy";
    else if (e.status === 503 && /not ready/.test(e.message)) key = "error_503_loading";
    if (!has(key)) key = e.status >= 500 ? "error_5xx" : "error_other";
    if (key === "error_413" && !ui.info) key = "error_413_plain";
    const mb = ui.info ? num(ui.info.max_body_bytes / 1024 / 1024, 1) : "";
    const box = el(
      "div",
      { class: "error", role: "alert" },
      el("p", { class: "badge" }, t("error_title")),
      el("p", { class: "plain" }, t(key, { seconds: e.retryAfter || "?", mb, status: e.status })),
    );
    if (e.message) {
      box.append(el("details", {}, el("summary", {}, t("error_details")), el("code", {}, e.message)));
    }
    box.append(el("button", { type: "button", onclick: () => retry(card) }, t("try_again")));
    return box;
  }

  function downloads(card) {
    const stem = card.name.replace(/\.[^.]*$/, "") || "picture";
    const note = el("span", { class: "muted", role: "status" });
    const json = el("button", { type: "button", onclick: () => saveJson(card, stem) }, t("download_json"));
    const report = el("button", { type: "button" }, t("download_report"));
    report.addEventListener("click", () => saveReport(card, stem, report, note));
    return el("footer", { class: "downloads" }, report, json, note);
  }

  function saveBlob(blob, name) {
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function saveJson(card, stem) {
    const text = JSON.stringify(card.result, null, 2);
    saveBlob(new Blob([text], { type: "application/json" }), `${stem}.check.json`);
  }

  async function saveReport(card, stem, button, note) {
    button.disabled = true;
    note.textContent = t("report_making");
    try {
      const response = await post("v1/check/report", card.file, card.name);
      if (!response.ok) {
        const e = await errorOf(response);
        note.textContent = t("report_failed", { message: e.message || e.status });
        return;
      }
      saveBlob(await response.blob(), `${stem}.report.html`);
      note.textContent = t("report_saved");
    } catch (_) {
      note.textContent = t("error_0");
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ the evidence

  function evidence(card) {
    const r = card.result;
    const errors = r.errors || {};
    const parts = [
      section("ev_credentials", credentials(r.credentials), errors.credentials, hasTree(r.credentials)),
      section("ev_marks", marks(r), errors.watermark || errors.known_watermark),
      section("ev_detector", detector(r.detector), errors.detector),
      section("ev_similar", similar(card, r.similarity), errors.similarity),
      section("ev_labels", labels(r.labels), errors.labels),
    ];
    const shown = ["credentials", "watermark", "known_watermark", "detector", "similarity", "labels"];
    const other = Object.entries(errors).filter(([n]) => !shown.includes(n));
    if (other.length) {
      parts.push(section("ev_failed", other.map(([n, m]) => el("p", {}, `${n}: ${m}`))));
    }
    return el("div", { class: "evidence" }, parts);
  }

  function section(titleKey, content, failure, tall = false) {
    const box = el("section", { class: tall ? "ev tall" : "ev" }, el("h3", {}, t(titleKey)));
    if (failure) box.append(el("p", { class: "failed" }, t("signal_failed", { message: failure })));
    box.append(...[content].flat(Infinity).filter((n) => n !== null && n !== undefined));
    return box;
  }

  function hasTree(c) {
    return Boolean(c && c.state !== "absent" && c.manifests && c.manifests.length);
  }

  function chip(text, kind) {
    return el("span", { class: `chip ${kind}` }, text);
  }

  function word(prefix, value) {
    return has(`${prefix}_${value}`) ? t(`${prefix}_${value}`) : String(value);
  }

  function when(stamp) {
    const date = new Date(stamp);
    if (Number.isNaN(date.getTime())) return stamp;
    return new Intl.DateTimeFormat(ui.lang, { dateStyle: "medium", timeStyle: "short" }).format(date);
  }

  // Content Credentials: the chain as a tree, the active manifest at its root
  function credentials(c) {
    if (!c) return el("p", { class: "muted" }, t("cc_not_read"));
    if (c.state === "absent") {
      const out = [el("p", {}, t("cc_none"))];
      if (c.remote_manifest) {
        out.push(el("p", { class: "muted" }, t("cc_remote", { url: c.remote_manifest })));
      }
      return out;
    }
    const out = [line(standing(c)), note(t(`integrity_${c.integrity}_more`), "small")];
    const manifests = c.manifests && c.manifests.length ? c.manifests : [activeOnly(c)];
    const root = manifests.find((m) => m.where === "active") || manifests[0];
    out.push(el("ul", { class: "tree" }, manifestNode(root, manifests, c, new Set())));
    if (c.codes && c.codes.length) {
      out.push(el("p", { class: "muted small" }, t("cc_codes"), " ", el("code", {}, c.codes.join(", "))));
    }
    if (c.error) out.push(el("p", { class: "muted small" }, c.error));
    return out;
  }

  // integrity and the signer's standing, as chips
  function standing(m) {
    const intact = chip(word("integrity", m.integrity), m.integrity === "intact" ? "good" : "bad");
    if (!m.standing) return [intact];
    return [intact, " ", chip(word("standing", m.standing), m.standing === "trusted" ? "good" : "warn")];
  }

  function activeOnly(c) {
    return {
      label: c.manifest_label,
      where: "active",
      generator: c.generator,
      signer: c.signer,
      signed_at: c.signed_at,
      integrity: c.integrity,
      standing: c.standing,
    };
  }

  function manifestNode(m, all, c, seen) {
    seen.add(m.label);
    const signer = m.signer || {};
    const who = signer.common_name || t("cc_unknown_signer");
    const org = signer.organisation && !who.includes(signer.organisation) ? ` (${signer.organisation})` : "";
    const taken = (c.ingredients || []).find((i) => i.manifest_label && i.manifest_label === m.label);
    const title = taken && taken.title ? `: ${taken.title}` : "";
    const stamp = m.signed_at ? t("cc_when", { when: when(m.signed_at) }) : t("cc_no_time");
    const li = el(
      "li",
      {},
      m.where === "active" ? null : el("p", { class: "rel" }, word("rel", m.relationship), title),
      taken ? thumbnail(taken) : null,
      el("p", {}, tn("cc_signed_by", { who: el("strong", {}, who + org) })),
      el("p", { class: "muted" }, stamp),
      m.generator ? el("p", { class: "muted" }, t("cc_tool", { tool: m.generator })) : null,
      el("p", {}, standing(m)),
    );
    const declared = (c.declarations || []).filter((d) => (d.manifest || c.manifest_label) === m.label);
    if (!declared.length && m.where === "active" && !c.declarations && c.digital_source_types) {
      for (const uri of c.digital_source_types) declared.push({ source_type: uri.split("/").pop() });
    }
    for (const d of declared) {
      const how = [d.action, d.software_agent].filter(Boolean).join(", ");
      const what = el("strong", {}, word("st", d.source_type));
      li.append(
        el(
          "p",
          { class: "declared" },
          tn("cc_declares", { what }),
          how ? el("span", { class: "muted" }, ` (${how})`) : null,
        ),
      );
    }
    // ingredients with credentials of their own are nodes of the tree; the others are listed
    const inTree = new Set(all.map((x) => x.label));
    const loose = (c.ingredients || []).filter((i) => !(i.manifest_label && inTree.has(i.manifest_label)));
    if (m.where === "active" && loose.length) li.append(ingredients(loose));
    const children = all.filter((x) => x.parent === m.label && !seen.has(x.label));
    if (children.length) li.append(el("ul", {}, children.map((x) => manifestNode(x, all, c, seen))));
    return li;
  }

  function ingredients(list) {
    return el(
      "div",
      { class: "ingredients" },
      el("p", { class: "muted" }, t("cc_ingredients")),
      list.map((i) => {
        const name = i.title || t("cc_untitled");
        return el(
          "figure",
          { class: "ingredient" },
          thumbnail(i),
          el("figcaption", {}, `${name} · ${word("rel", i.relationship)}`),
        );
      }),
    );
  }

  // the preview an ingredient's credentials carry (a data: URI of a JPEG, PNG or WebP the
  // service checked and kept small), or nothing
  function thumbnail(i) {
    const src = i.thumbnail;
    if (typeof src !== "string" || !/^data:image\/(jpeg|png|webp);base64,/.test(src)) return null;
    return el("img", { class: "thumb", src, alt: t("alt_ingredient", { name: i.title || t("cc_untitled") }) });
  }

  // a line of the evidence, and a smaller, muted one
  function line(...children) {
    return el("p", {}, ...children);
  }

  function note(text, extra = "") {
    return el("p", { class: `muted ${extra}`.trim() }, text);
  }

  // our watermark, its ledger record and binding, and the known generators' marks
  function marks(r) {
    const out = [];
    const w = r.watermark;
    const ours = chip(t("wm_ours"), "plain");
    if (!w) out.push(line(ours, " ", t("wm_not_read")));
    else if (w.detected) {
      out.push(line(ours, " ", chip(t("found"), "bad")), line(pWords(w.p_value)));
      if (w.payload) {
        const text = w.payload_text ? `“${w.payload_text}” (${w.payload})` : w.payload;
        out.push(line(t("wm_payload"), " ", el("code", {}, text)));
      } else out.push(note(t("wm_payload_unread")));
      if (w.public_key) out.push(el("p", { class: "warn-text" }, t("wm_public")));
      if (w.format === "legacy") out.push(el("p", { class: "warn-text" }, t("wm_legacy")));
    } else {
      out.push(line(ours, " ", chip(t("not_found"), "none")), note(w.reason || t("wm_absent_more")));
    }
    out.push(ledger(r));
    const k = r.known_watermark;
    const known = chip(t("wm_known"), "plain");
    if (k && k.detected) {
      out.push(line(known, " ", chip(t("wm_known_found", { name: k.known }), "bad")));
      out.push(line(pWords(k.p_value)));
    } else {
      out.push(line(known, " ", chip(t("not_found"), "none"), " ", t("wm_known_none")));
    }
    return out;
  }

  function ledger(r) {
    const rec = r.ledger;
    if (rec) {
      const said = { generator: rec.generator, model: rec.model || "-", created: when(rec.created) };
      const box = el("div", { class: "ledger" }, line(t("ledger_record", said)));
      const b = r.binding;
      if (b) {
        const words = el("p", { class: b.state === "mismatch" ? "warn-text" : "" }, word("binding", b.state));
        words.append(" ", el("span", { class: "muted" }, `(${b.reason})`));
        box.append(words);
      }
      return box;
    }
    if (!r.watermark || !r.watermark.detected) return null;
    return note(t(ui.info && !ui.info.ledger ? "ledger_none_configured" : "ledger_no_record"));
  }

  // "about one chance in 10^20 that an unmarked picture reads like this"
  function pWords(p) {
    if (!(p > 0)) return tn("p_tiny", { pow: power(300) });
    if (p >= 0.01) return tn("p_common", { odds: num(1 / p, 0) });
    const exponent = Math.floor(-Math.log10(p));
    if (exponent < 6) {
      const odds = Number((1 / p).toPrecision(2));
      return tn("p_odds", { odds: num(odds, 0) });
    }
    return tn("p_odds", { odds: power(exponent) });
  }

  function power(exponent) {
    return el("span", { class: "pow" }, "10", el("sup", {}, String(exponent)));
  }

  // the detector's score on a bar, with its calibrated bands (from v1/info)
  function detector(d) {
    if (!d) return note(t("det_not_run"));
    const bands = ui.info && ui.info.detectors ? ui.info.detectors[d.model] : null;
    const card = modelCard(d.model, bands);
    if (d.score === null || d.score === undefined) {
      return [line(t("det_not_scored", { reason: d.reason || "" })), note(card, "small")];
    }
    const low = bands ? bands.uncertain_below : null;
    const out = [
      line(tn("det_score", { score: el("strong", {}, num(d.score)), band: word("band", d.band) })),
      bar(d, low),
      legend(low),
      note(t("det_threshold", { threshold: num(d.threshold) })),
    ];
    if (d.target_fpr !== null && d.target_fpr !== undefined) {
      const share = num(d.target_fpr * 100, 1);
      out.push(note(t(d.target_fpr <= 0.01 ? "det_fpr" : "det_fpr_loose", { share })));
    }
    out.push(el("p", { class: "muted small" }, t("det_card"), " ", card));
    if (d.band !== "likely_generated") out.push(el("p", { class: "small" }, t("det_low_is_not_real")));
    return out;
  }

  // the model card's one line, shipped beside the checkpoint (v1/info): this language's,
  // else English, else a note that this detector has none (its name alone until v1/info
  // has answered: the card is drawn again then)
  function modelCard(model, info) {
    if (!ui.info) return model;
    const card = info && info.card ? info.card : null;
    const text = card ? card[ui.lang] || card.en : null;
    return typeof text === "string" && text ? text : t("card_other", { model });
  }

  // the bands side by side from 0 to 1, and the score's mark on them
  function bar(d, low) {
    const label = t("det_bar", { score: num(d.score), threshold: num(d.threshold) });
    const box = el("div", { class: "bar", role: "img", "aria-label": label });
    const zone = (from, to, kind) => {
      const z = el("span", { class: `zone ${kind}` });
      z.style.left = `${from * 100}%`;
      z.style.width = `${Math.max(0, to - from) * 100}%`;
      return z;
    };
    box.append(zone(0, low ?? d.threshold, low === null ? "unknown" : "real"));
    if (low !== null) box.append(zone(low, d.threshold, "uncertain"));
    box.append(zone(d.threshold, 1, "generated"));
    const mark = el("span", { class: "score" });
    mark.style.left = `${d.score * 100}%`;
    box.append(mark);
    return box;
  }

  function legend(low) {
    return el(
      "p",
      { class: "legend small" },
      low === null ? null : el("span", { class: "lk real" }, t("band_likely_real")),
      low === null ? null : el("span", { class: "lk uncertain" }, t("band_uncertain")),
      el("span", { class: "lk generated" }, t("band_likely_generated")),
    );
  }

  // registered works the picture resembles: the picture with the region outlined, beside them
  function similar(card, sim) {
    if (!sim) {
      const configured = ui.info ? ui.info.similarity_index : false;
      return note(t(configured ? "sim_not_run" : "sim_no_index"));
    }
    const matches = (sim.matches || []).filter((m) => m.verdict !== "none");
    if (!matches.length || sim.verdict === "none") return line(t("sim_nothing"));
    const top = matches.slice(0, 3);
    const outlined = matches.some((m) => Array.isArray(m.region));
    const thumb = el("img", { src: card.url, alt: t("alt_picture", { name: card.name }) });
    const canvas = el("canvas", { class: "outline", "aria-hidden": "true" });
    thumb.addEventListener("load", () => drawRegion(card, canvas, thumb));
    const frame = el("div", { class: "frame" }, thumb, canvas);
    return el(
      "div",
      { class: "side" },
      el(
        "div",
        { class: "pair" },
        el("figure", { class: "pic small" }, frame, outlined ? note(t("sim_outlined"), "small") : null),
        top.map((m) => workPicture(card, m)),
      ),
      el("ul", { class: "matches" }, top.map(work)),
      note(t("sim_report"), "small"),
    );
  }

  function workTitle(m) {
    return m.title || m.path.split("/").pop();
  }

  // a registered work's own picture, beside the upload: fetched with the API key (an <img>
  // cannot send it) once per check of the card, kept as a blob: URL that renders reuse
  function workPicture(card, m) {
    const title = workTitle(m);
    const img = el("img", { alt: t("alt_work", { title }) });
    const frame = el("div", { class: "frame" }, img);
    const caption = el("figcaption", { class: "muted small" }, title);
    const figure = el("figure", { class: "pic small work" }, frame, caption);
    loadWork(card, m.id).then((url) => {
      if (url) img.src = url;
      else {
        frame.classList.add("broken");
        img.remove();
        frame.textContent = t("sim_no_picture");
      }
    });
    return figure;
  }

  function loadWork(card, id) {
    if (!card.works) card.works = new Map();
    if (!card.works.has(id)) {
      const works = card.works;
      const url = fetchWork(id).then((found) => {
        if (!found && works.get(id) === url) works.delete(id); // asked again on the next render
        return found;
      });
      works.set(id, url);
    }
    return card.works.get(id);
  }

  async function fetchWork(id) {
    try {
      const response = await fetch(`v1/similar/works/${encodeURIComponent(id)}/picture`, {
        headers: headers(),
      });
      if (!response.ok) return null;
      return URL.createObjectURL(await response.blob());
    } catch (_) {
      return null;
    }
  }

  // the card is checked again: its works' pictures go with its old result
  function dropWorks(card) {
    const works = card.works;
    card.works = null;
    if (!works) return;
    for (const url of works.values()) url.then((u) => u && URL.revokeObjectURL(u));
  }

  // one registered work: its title, verdict, creator and licence, and how it was matched
  function work(m) {
    const title = el("strong", {}, workTitle(m));
    const verdict = chip(word("sim", m.verdict), m.verdict === "similar" ? "warn" : "bad");
    const credit = [m.creator, m.licence].filter(Boolean).join(" · ");
    const how =
      m.verification === "verified"
        ? t("sim_verified", { inliers: m.inliers })
        : t("sim_score", { score: num(m.score) });
    return el("li", {}, line(title, " ", verdict), credit ? note(credit) : null, note(how), falseMatches(m));
  }

  // how often unrelated pictures reach this verdict: the measured rate, or its 95% bound
  function falseMatches(m) {
    const high = Array.isArray(m.false_match_ci95) ? m.false_match_ci95[1] : null;
    if (m.false_match_rate > 0) {
      return note(t("sim_rate", { odds: num(1 / m.false_match_rate, 0) }), "small");
    }
    return high > 0 ? note(t("sim_rate_bound", { odds: num(1 / high, 0) }), "small") : null;
  }

  // GB 45438 and IPTC labels, and generator metadata: what they say and who wrote them
  function labels(lab) {
    if (!lab) return note(t("lab_not_read"));
    const out = [];
    const gb = lab.gb45438;
    const gbChip = chip("GB 45438", "plain");
    if (gb && gb.fields) {
      const where = el("span", { class: "muted" }, ` (${gb.source})`);
      out.push(line(gbChip, " ", el("strong", {}, word("gb", gb.label)), where));
      const rows = Object.entries(gb.fields).filter(([k, v]) => v && k !== "Label");
      const pairs = rows.map(([k, v]) => [el("dt", {}, word("gbf", k)), el("dd", {}, v)]);
      if (rows.length) out.push(el("dl", { class: "fields" }, pairs));
    } else if (gb) {
      out.push(line(gbChip, " ", t("gb_broken", { error: gb.error || "" })));
    } else out.push(line(gbChip, " ", t("gb_none")));
    const dst = lab.digital_source_type ? lab.digital_source_type.split("/").pop() : null;
    const says = dst ? tn("iptc_says", { what: el("strong", {}, word("st", dst)) }) : t("iptc_none");
    out.push(line(chip("IPTC", "plain"), " ", says));
    const generators = lab.generator_signals || [];
    for (const g of generators) {
      const where = el("span", { class: "muted" }, ` (${g.key}, ${g.source})`);
      out.push(line(chip(t("lab_generator"), "plain"), " ", el("strong", {}, g.generator), where));
    }
    if (!gb && !dst && !generators.length) out.push(note(t("lab_absent_more"), "small"));
    return out;
  }

  // ------------------------------------------------------------------ start

  // every file goes to the service, which says in plain words what is not a picture
  function imageFiles(list) {
    return Array.from(list || []);
  }

  function wire() {
    const input = $("files");
    $("pick").addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      addFiles(imageFiles(input.files));
      input.value = "";
    });
    const drop = $("drop");
    for (const type of ["dragenter", "dragover"]) {
      drop.addEventListener(type, (e) => {
        e.preventDefault();
        drop.classList.add("over");
      });
    }
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      addFiles(imageFiles(e.dataTransfer.files));
    });
    // a file dropped beside the zone must not make the browser leave the page
    document.addEventListener("dragover", (e) => e.preventDefault());
    document.addEventListener("drop", (e) => e.preventDefault());
    document.addEventListener("paste", (e) => {
      const pasted = Array.from(e.clipboardData ? e.clipboardData.files : []);
      const files = pasted.filter((f) => f.type.startsWith("image/"));
      if (!files.length) return;
      e.preventDefault();
      addFiles(
        files.map((f) => {
          ui.pasted += 1;
          const ext = (f.type.split("/")[1] || "png").replace(/[^a-z0-9]/g, "");
          return new File([f], `pasted-${ui.pasted}.${ext}`, { type: f.type });
        }),
      );
    });
    $("key").addEventListener("submit", saveKey);
    for (const button of document.querySelectorAll("[data-lang]")) {
      button.addEventListener("click", () => setLang(button.dataset.lang));
    }
  }

  async function start() {
    wire();
    ui.fallback = await loadStrings("en");
    let lang = "en";
    try {
      lang = localStorage.getItem(LANG_STORE) || "";
    } catch (_) {
      lang = "";
    }
    if (!LANGS.includes(lang)) {
      lang = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
    }
    await setLang(lang);
    const meta = document.querySelector('meta[name="aigc-keys"]');
    if (meta && meta.content === "required") {
      askForKey(apiKey() ? "" : "key_needed");
      $("key-input").value = apiKey();
    }
    fetchInfo();
    document.body.dataset.ready = "true";
  }

  start();
})();
