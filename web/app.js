// Atelier web gallery: ask the API for a presigned POST, post the photo straight to the bucket with upload
// progress, then poll the image's status and show each style as it finishes, beside the original.
"use strict";

(function () {
  // The styles as GET /styles gives them (titles, options); these stand in if it cannot be reached.
  let STYLES = [
    { name: "sketch", title: "Graphite sketch", options: {} },
    { name: "pencil", title: "Colour pencil", options: {} },
    { name: "oil", title: "Oil painting", options: {} },
    { name: "watercolor", title: "Watercolour", options: {} },
  ];
  const OFF_BY_DEFAULT = new Set(["anime", "upscale"]);  // slower, and not what most photos come for
  const EXAMPLES = new Set(["sketch", "pencil", "oil", "watercolor"]);  // web/examples/<style>.webp
  // What the styles without an example do: a thumbnail cannot show an upscale, and an untrained model's
  // output would mislead
  const NOTES = {
    anime: "The photo redrawn in an anime look (AnimeGANv2); slower than the drawing styles.",
    upscale: "Two to four times the pixels (EDSR super-resolution): finer detail, not a new look.",
  };
  const POLL_MS = 1000;
  const POLL_LIMIT_MS = 10 * 60 * 1000;

  // What each reason code means to a person (the API adds the detail in its message).
  const PHOTO_REASONS = {
    too_large_bytes: "This file is larger than Atelier accepts (40 MiB). Save a smaller copy and try again.",
    too_many_pixels: "This photo has more pixels than Atelier accepts (50 megapixels, 20,000 px a side). Downsize it and try again.",
    unsupported_format: "This is not a JPEG, PNG or WebP photo, or it is animated. Send a still JPEG, PNG or WebP.",
    corrupt: "This file is damaged or incomplete, so it cannot be read. Try the original from your camera or phone.",
    too_expensive: "This file is built in a way that would take far too long to read. Re-save it with a standard editor and try again.",
  };
  const JOB_REASONS = {
    model_unavailable: "The model for this style is not installed on the server.",
    model_unpinned: "The model for this style has no checksum to verify it, so it was not used.",
    model_mismatch: "The model for this style failed its checksum, so it was not used.",
    invalid_option: "An option set for this photo cannot be honoured.",
    retries_exhausted: "This style failed three times in a row; the server logged why.",
    timed_out: "This style took longer than its time limit.",
    event_expired: "The server was too busy to start this style in time.",
  };

  function sentence(entry) {
    return PHOTO_REASONS[entry.reason] || JOB_REASONS[entry.reason] || "This style could not be made.";
  }

  function seconds(fromIso, toIso) {
    const from = Date.parse(fromIso);
    const to = toIso ? Date.parse(toIso) : Date.now();
    return Math.max(0, Math.round((to - from) / 1000));
  }

  const config = window.ATELIER_CONFIG || {};
  const params = new URLSearchParams(window.location.search);
  const apiBase = (params.get("api") || config.apiBase || "/api").replace(/\/+$/, "");
  const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const token = fragment.get("id_token") || fragment.get("access_token") || config.authToken || "";
  if (fragment.has("id_token") || fragment.has("access_token")) {
    history.replaceState(null, "", window.location.pathname + window.location.search);  // keep it out of history
  }

  const $ = (selector, root) => (root || document).querySelector(selector);

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  async function api(method, path, body) {
    const response = await fetch(apiBase + path, {
      method,
      headers: headers(body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      const message =
        error.message ||
        (data && data.message) ||
        (response.status >= 500
          ? "Atelier is not answering right now (HTTP " + response.status + "). Try again in a minute."
          : "The request was refused (HTTP " + response.status + ").");
      const err = new Error(message);
      err.code = error.code || String(response.status);
      throw err;
    }
    return data;
  }

  async function call(method, path, body) {
    try {
      return await api(method, path, body);
    } catch (err) {
      if (err instanceof TypeError) {  // fetch itself failed: offline, DNS, CORS, a dropped connection
        const offline = new Error("Atelier could not be reached. Check your connection and try again.");
        offline.code = "network";
        throw offline;
      }
      throw err;
    }
  }

  // --- style choice ----------------------------------------------------------------------------------

  async function loadStyles() {
    try {
      STYLES = (await call("GET", "/styles")).styles;
    } catch (err) {
      notice("The list of styles could not be loaded, so only the four drawing styles are offered: " + err.message);
    }
    renderStyleChoice();
    document.body.dataset.styles = "loaded";
  }

  function control(style, option, spec) {
    const id = "opt-" + style.name + "-" + option;
    const label = document.createElement("label");
    label.className = "style-option";
    label.htmlFor = id;
    let input;
    if (spec.choices) {
      input = document.createElement("select");
      if (option === "model") input.append(new Option("the server's default", ""));
      for (const choice of spec.choices) {
        const text = (option === "factor" ? "x" : "") + choice.value + (choice.trained === false ? " (untrained)" : "");
        input.append(new Option(text, String(choice.value)));
      }
      label.append(option === "factor" ? "Factor " : "Model ", input);
    } else {
      input = document.createElement("input");
      input.type = "range";
      input.min = spec.min;
      input.max = spec.max;
      input.step = "0.05";
      input.value = spec.default == null ? spec.max : spec.default;
      input.dataset.default = input.value;
      const shown = document.createElement("output");
      shown.textContent = Number(input.value).toFixed(2);
      input.addEventListener("input", () => { shown.textContent = Number(input.value).toFixed(2); });
      label.append("Strength ", input, shown);
    }
    input.id = id;
    input.dataset.style = style.name;
    input.dataset.option = option;
    input.setAttribute("aria-label", option[0].toUpperCase() + option.slice(1) + " of " + style.title);
    return label;
  }

  function renderStyleChoice() {
    const box = $("#styles");
    box.replaceChildren(box.firstElementChild);  // the legend stays
    for (const style of STYLES) {
      const choice = document.createElement("div");
      choice.className = "style-choice";
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.name = "style";
      input.value = style.name;
      input.checked = !OFF_BY_DEFAULT.has(style.name);
      if (EXAMPLES.has(style.name)) {
        const img = document.createElement("img");
        img.className = "style-example";
        img.src = "examples/" + style.name + ".webp";
        img.alt = "";  // the title says it; the example only shows it
        label.append(img);
      }
      const text = document.createElement("span");
      text.textContent = style.title;
      label.prepend(input);
      label.append(text);
      choice.append(label);
      if (NOTES[style.name]) {
        const note = document.createElement("p");
        note.className = "style-note";
        note.textContent = NOTES[style.name];
        choice.append(note);
      }
      for (const [option, spec] of Object.entries(style.options || {})) choice.append(control(style, option, spec));
      box.append(choice);
    }
  }

  function chosenStyles() {
    return Array.from(document.querySelectorAll('input[name="style"]:checked')).map((i) => i.value);
  }

  // The options of the chosen styles, only where they differ from the style's own default.
  function chosenOptions(styles) {
    const options = {};
    for (const input of document.querySelectorAll("[data-option]")) {
      const style = input.dataset.style;
      if (!styles.includes(style) || input.value === "" || input.value === input.dataset.default) continue;
      const value = input.type === "range" || input.dataset.option === "factor" ? Number(input.value) : input.value;
      (options[style] = options[style] || {})[input.dataset.option] = value;
    }
    return options;
  }

  function notice(message) {
    const p = $("#notice");
    p.textContent = message || "";
    p.hidden = !message;
  }

  // --- one photo -------------------------------------------------------------------------------------

  class Card {
    // A photo being uploaded now (``file``: its original is the local file), or one from the history
    // (``file`` is {name}; its original comes with its view, as original_url).
    constructor(file, styles, originalUrl, at) {
      this.file = file;
      this.styles = styles;
      this.originalUrl = originalUrl || "";
      this.el = $("#card-template").content.firstElementChild.cloneNode(true);
      this.el.dataset.file = file.name;
      $(".card-title", this.el).textContent = file.name;
      $(".card-progress", this.el).setAttribute("aria-label", "Upload progress of " + file.name);
      this.tiles = new Map();
      for (const name of styles) this.addTile(name);
      const dismiss = $(".card-dismiss", this.el);
      dismiss.setAttribute("aria-label", "Dismiss " + file.name);
      dismiss.addEventListener("click", () => this.dismiss());
      const cancel = $(".card-cancel", this.el);
      cancel.setAttribute("aria-label", "Cancel the upload of " + file.name);
      cancel.addEventListener("click", () => this.xhr && this.xhr.abort());
      if (at === "end") $("#gallery").append(this.el);
      else $("#gallery").prepend(this.el);
    }

    // Off the page, and off this browser's history of it (the renders stay, with their links).
    dismiss() {
      clearTimeout(this.renewal);
      this.dismissed = true;
      if (this.xhr) this.xhr.abort();
      if (this.el.dataset.imageId) dismissed.add(this.el.dataset.imageId);
      const next = this.el.nextElementSibling || this.el.previousElementSibling;
      this.el.remove();
      const focus = next ? $(".card-dismiss", next) : $("#drop");
      focus.focus();
    }

    static fromView(view) {
      const card = new Card({ name: view.filename }, view.styles.map((s) => s.style), view.original_url, "end");
      card.el.dataset.imageId = view.image_id;
      $(".card-progress", card.el).hidden = true;
      card.show(view);
      if (view.state === "processing" || view.state === "awaiting_upload") {
        card.setState("rendering", "rendering");
        card.poll("/images/" + view.image_id);
      }
      return card;
    }

    // Every URL of a view is short-lived: ask for the view again a minute before they expire.
    renewLater(view) {
      clearTimeout(this.renewal);
      const left = Date.parse(view.urls_expire_at) - Date.now() - 60 * 1000;
      if (!(left > 0) || view.state !== "complete") return;
      this.renewal = setTimeout(async () => {
        try {
          this.show(await call("GET", "/images/" + this.el.dataset.imageId), true);
        } catch (err) {
          this.renewal = setTimeout(() => this.renewLater(view), 30 * 1000);
        }
      }, left);
    }

    setState(text, state) {
      $(".card-state", this.el).textContent = text;
      this.el.dataset.state = state || "";
    }

    fail(message, detail) {
      const p = $(".card-error", this.el);
      p.textContent = message;
      if (detail) {
        const small = document.createElement("span");
        small.className = "reason-detail";
        small.textContent = " (" + detail + ")";
        p.append(small);
      }
      p.hidden = false;
      $(".card-progress", this.el).hidden = true;
      this.setState("refused", "refused");
    }

    addTile(name) {
      const tile = $("#tile-template").content.firstElementChild.cloneNode(true);
      const title = (STYLES.find((s) => s.name === name) || { title: name }).title;
      tile.dataset.style = name;
      $(".tile-name", tile).textContent = title;
      $(".tile-state", tile).textContent = "waiting";
      const before = $(".compare-before", tile);
      for (const img of [before, $(".compare-after", tile)]) {
        img.addEventListener("error", () => { img.hidden = true; });  // a gone file: no broken-image icon
        img.addEventListener("load", () => { img.hidden = false; });
      }
      if (this.originalUrl) before.src = this.originalUrl;
      before.alt = this.file.name + " (original)";
      $(".compare-range", tile).setAttribute("aria-label", "Before and after: " + title + " of " + this.file.name);
      wireCompare(tile);
      $(".tiles", this.el).append(tile);
      this.tiles.set(name, tile);
    }

    updateTile(entry, renew) {
      const tile = this.tiles.get(entry.style);
      if (!tile) return;
      const state = entry.state;
      const text = {
        pending: entry.last_error ? "retrying after an error" : "waiting",
        rendering: "rendering" + (entry.started_at ? ", " + seconds(entry.started_at) + " s" : ""),
        done: "done" + (entry.started_at && entry.finished_at ? " in " + seconds(entry.started_at, entry.finished_at) + " s" : ""),
        rejected: "refused",
        failed: "failed",
      };
      $(".tile-state", tile).textContent = text[state] || state;
      const untrained = entry.trained === false;
      const badge = $(".tile-untrained", tile);
      badge.hidden = !untrained;
      if (untrained) badge.title = "Made by " + (entry.model || "a model") + ", which is untrained: its output is noise, not art";
      if (tile.dataset.state === state && !(renew && state === "done")) return;  // changes with the state
      tile.dataset.state = state;
      if (state === "done") {
        const after = $(".compare-after", tile);
        after.alt = this.file.name + " as " + $(".tile-name", tile).textContent + (untrained ? " (untrained model)" : "");
        after.src = entry.preview_url || entry.url;  // the full render only in the full view
        const link = $(".tile-download", tile);
        link.href = entry.download_url;
        link.download = entry.download_name || "";
        link.hidden = false;
        const open = $(".tile-open", tile);
        open.hidden = false;
        open.setAttribute("aria-label", "View " + $(".tile-name", tile).textContent + " of " + this.file.name + " at full size");
        open.onclick = () => openViewer(this, entry, $(".tile-name", tile).textContent, untrained);
      } else if (state === "rejected" || state === "failed") {
        const retry = $(".tile-retry", tile);
        retry.hidden = state !== "failed";
        retry.setAttribute("aria-label", "Try " + $(".tile-name", tile).textContent + " again");
        retry.onclick = () => this.retry(entry.style, tile);
        const p = $(".tile-reason", tile);
        p.textContent = sentence(entry);
        if (entry.message) {
          const small = document.createElement("span");
          small.className = "reason-detail";
          small.textContent = " (" + entry.message + ")";
          p.append(small);
        }
        p.hidden = false;
      }
    }

    async retry(style, tile) {
      const button = $(".tile-retry", tile);
      button.disabled = true;
      let view;
      try {
        view = await call("POST", "/images/" + this.el.dataset.imageId + "/retry", { style });
      } catch (err) {
        $(".tile-reason", tile).textContent = err.message;
        button.disabled = false;
        return;
      }
      button.disabled = false;
      button.hidden = true;
      $(".tile-reason", tile).hidden = true;
      this.show(view);
      this.setState("rendering", "rendering");
      this.poll("/images/" + this.el.dataset.imageId);
    }

    // Show a view: the photo refused once for the upload, or each style's state; true when it is final.
    show(view, renew) {
      if (view.original_url && (renew || !this.originalUrl)) {
        this.originalUrl = view.original_url;
        for (const tile of this.tiles.values()) $(".compare-before", tile).src = view.original_url;
      }
      const refusal = view.state === "complete" ? this.photoRefusal(view) : null;
      if (refusal) {
        this.fail(sentence(refusal), refusal.message);
        return true;
      }
      for (const entry of view.styles) this.updateTile(entry, renew);
      if (view.state === "complete") {
        const problems = view.styles.filter((s) => s.state !== "done").length;
        this.setState(problems ? "finished with problems" : "done", problems ? "problem" : "done");
        this.renewLater(view);
        return true;
      }
      if (view.state === "upload_expired") {
        this.fail("The upload window closed before the photo arrived. Add the photo again.");
        return true;
      }
      return false;
    }

    // The photo itself refused (every style rejected for the same reason): said once, for the upload.
    photoRefusal(view) {
      const rejected = view.styles.filter((s) => s.state === "rejected");
      if (!rejected.length || rejected.length !== view.styles.length) return null;
      const reasons = new Set(rejected.map((s) => s.reason));
      return reasons.size === 1 ? rejected[0] : null;
    }

    async start() {
      this.setState("asking", "asking");
      let grant;
      try {
        grant = await call("POST", "/uploads", {
          filename: this.file.name,
          content_type: this.file.type,
          size: this.file.size,
          styles: this.styles,
          ...(this.options && Object.keys(this.options).length ? { options: this.options } : {}),
        });
      } catch (err) {
        this.fail(err.message);
        return;
      }
      this.el.dataset.imageId = grant.image_id;
      this.setState("uploading", "uploading");
      try {
        await this.post(grant.upload);
      } catch (err) {
        if (this.dismissed) return;
        this.fail(err.message);
        if (err.code === "cancelled") this.setState("cancelled", "cancelled");
        return;
      }
      $(".card-progress", this.el).value = 100;
      this.setState("rendering", "rendering");
      this.poll(grant.status_url);
    }

    post(upload) {
      return new Promise((resolve, reject) => {
        const form = new FormData();
        for (const [name, value] of Object.entries(upload.fields)) form.append(name, value);
        form.append("file", this.file);
        const xhr = new XMLHttpRequest();
        this.xhr = xhr;
        const cancel = $(".card-cancel", this.el);
        cancel.hidden = false;
        const done = () => { this.xhr = null; cancel.hidden = true; };
        xhr.addEventListener("loadend", done);
        xhr.addEventListener("abort", () => {
          const err = new Error("Upload cancelled.");
          err.code = "cancelled";
          reject(err);
        });
        const bar = $(".card-progress", this.el);
        xhr.upload.addEventListener("progress", (e) => {
          if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
        });
        xhr.addEventListener("load", () => {
          if (xhr.status >= 200 && xhr.status < 300) {
            resolve();
            return;
          }
          const xml = xhr.responseXML || new DOMParser().parseFromString(xhr.responseText || "", "text/xml");
          const code = xml && xml.querySelector("Code");
          const message = xml && xml.querySelector("Message");
          reject(
            new Error(
              "upload refused" +
                (code ? " (" + code.textContent + ")" : " (HTTP " + xhr.status + ")") +
                (message ? ": " + message.textContent : "")
            )
          );
        });
        xhr.addEventListener("error", () => reject(new Error("the upload could not reach storage")));
        xhr.open("POST", upload.url);
        xhr.send(form);
      });
    }

    async poll(statusUrl) {
      if (this.polling) return;
      this.polling = true;
      try {
        await this.follow(statusUrl);
      } finally {
        this.polling = false;
      }
    }

    async follow(statusUrl) {
      const started = Date.now();
      for (;;) {
        if (this.dismissed) return;
        let view;
        try {
          view = await call("GET", statusUrl);
        } catch (err) {
          if (err.code === "not_found" || Date.now() - started > POLL_LIMIT_MS) {
            this.fail(err.message);
            return;
          }
          view = null;
        }
        if (view && this.show(view)) return;
        if (Date.now() - started > POLL_LIMIT_MS) {
          this.setState("still rendering; reload later", "slow");
          return;
        }
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    }
  }

  // --- the full view: the render beside its original at full size, fitted or at 100 % ------------------

  function wireCompare(root) {
    const range = $(".compare-range", root);
    const compare = $(".compare", root);
    const move = () => compare.style.setProperty("--pos", range.value + "%");
    range.addEventListener("input", move);
    move();
  }

  function openViewer(card, entry, styleTitle, untrained) {
    const dialog = $("#viewer");
    const title = styleTitle + " of " + card.file.name + (untrained ? " (untrained model)" : "");
    $("#viewer-title").textContent = title;
    const before = $(".viewer-compare .compare-before", dialog);
    const after = $(".viewer-compare .compare-after", dialog);
    before.src = card.originalUrl || "";
    before.alt = card.file.name + " (original)";
    after.src = entry.url;  // the full render, fetched now
    after.alt = title;
    $(".viewer-compare .compare-range", dialog).setAttribute("aria-label", "Before and after: " + title);
    const link = $("#viewer-download");
    link.href = entry.download_url;
    link.download = entry.download_name || "";
    zoom(false);
    dialog.showModal();
    $(".viewer-compare .compare-range", dialog).focus();
  }

  function zoom(full) {
    const stage = $("#viewer-stage");
    stage.dataset.zoom = full ? "full" : "fit";
    $("#viewer-zoom").setAttribute("aria-pressed", String(full));
    $("#viewer-zoom").textContent = full ? "Fit" : "100 %";
  }

  function wireViewer() {
    const dialog = $("#viewer");
    wireCompare(dialog);
    $("#viewer-close").addEventListener("click", () => dialog.close());
    $("#viewer-zoom").addEventListener("click", () => zoom($("#viewer-stage").dataset.zoom !== "full"));
    dialog.addEventListener("keydown", (e) => {
      if (e.key === "z" || e.key === "Z") {
        e.preventDefault();
        zoom($("#viewer-stage").dataset.zoom !== "full");
      }
    });
    dialog.addEventListener("click", (e) => {
      if (e.target === dialog) dialog.close();  // a click on the backdrop
    });
  }

  function addFiles(files) {
    const styles = chosenStyles();
    if (!styles.length) {
      notice("Choose at least one style first.");
      return;
    }
    notice("");
    const options = chosenOptions(styles);
    for (const file of files) {
      const card = new Card(file, styles, URL.createObjectURL(file));
      card.options = options;
      card.start();  // the API says what it refuses, and why
    }
  }

  // Dismissed images, kept by this browser so a reload does not bring them back.
  const dismissed = {
    key: "atelier.dismissed",
    all() {
      try {
        return new Set(JSON.parse(localStorage.getItem(this.key) || "[]"));
      } catch (e) {
        return new Set();
      }
    },
    add(id) {
      const ids = this.all();
      ids.add(id);
      try {
        localStorage.setItem(this.key, JSON.stringify(Array.from(ids).slice(-500)));
      } catch (e) {
        // storage full or off: dismissed for this visit only
      }
    },
  };

  // The history: the caller's earlier uploads, newest first, a page at a time, so a reload loses nothing.
  async function loadHistory(cursor) {
    let page;
    try {
      page = await call("GET", "/images?limit=20" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    } catch (err) {
      notice("Your earlier photos could not be listed: " + err.message);
      document.body.dataset.history = "failed";
      return;
    }
    const hidden = dismissed.all();
    for (const view of page.images) {
      if (hidden.has(view.image_id)) continue;
      if (!document.querySelector('.card[data-image-id="' + view.image_id + '"]')) Card.fromView(view);
    }
    const more = $("#more");
    more.hidden = !page.next_cursor;
    more.onclick = () => loadHistory(page.next_cursor);
    document.body.dataset.history = "loaded";
  }

  function wireDropZone() {
    const drop = $("#drop");
    const input = $("#file-input");
    input.addEventListener("change", () => {
      addFiles(Array.from(input.files));
      input.value = "";
    });
    for (const name of ["dragenter", "dragover"]) {
      drop.addEventListener(name, (e) => {
        e.preventDefault();
        drop.classList.add("over");
      });
    }
    for (const name of ["dragleave", "drop"]) {
      drop.addEventListener(name, (e) => {
        e.preventDefault();
        drop.classList.remove("over");
      });
    }
    drop.addEventListener("drop", (e) => addFiles(Array.from(e.dataTransfer.files)));
    drop.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        input.click();
      }
    });
  }

  loadStyles();
  wireDropZone();
  wireViewer();
  loadHistory();
})();
