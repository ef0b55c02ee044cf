// Atelier web gallery: ask the API for a presigned POST, post the photo straight to the bucket with upload
// progress, then poll the image's status and show each style as it finishes, beside the original.
"use strict";

(function () {
  const STYLES = [
    { name: "sketch", title: "Graphite sketch" },
    { name: "pencil", title: "Colour pencil" },
    { name: "oil", title: "Oil painting" },
    { name: "watercolor", title: "Watercolour" },
    { name: "anime", title: "Anime (AnimeGANv2)", off: true },
  ];
  const POLL_MS = 1000;
  const POLL_LIMIT_MS = 10 * 60 * 1000;

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
      const message = error.message || (data && data.message) || response.statusText;
      const err = new Error(message);
      err.code = error.code || String(response.status);
      throw err;
    }
    return data;
  }

  // --- style choice ----------------------------------------------------------------------------------

  function renderStyleChoice() {
    const box = $("#styles");
    for (const style of STYLES) {
      const label = document.createElement("label");
      label.className = "style-choice";
      const input = document.createElement("input");
      input.type = "checkbox";
      input.name = "style";
      input.value = style.name;
      input.checked = !style.off;
      const text = document.createElement("span");
      text.textContent = style.title;
      label.append(input, text);
      box.append(label);
    }
  }

  function chosenStyles() {
    return Array.from(document.querySelectorAll('input[name="style"]:checked')).map((i) => i.value);
  }

  function notice(message) {
    const p = $("#notice");
    p.textContent = message || "";
    p.hidden = !message;
  }

  // --- one photo -------------------------------------------------------------------------------------

  class Card {
    constructor(file, styles) {
      this.file = file;
      this.styles = styles;
      this.originalUrl = URL.createObjectURL(file);
      this.el = $("#card-template").content.firstElementChild.cloneNode(true);
      this.el.dataset.file = file.name;
      $(".card-title", this.el).textContent = file.name;
      this.tiles = new Map();
      for (const name of styles) this.addTile(name);
      $("#gallery").prepend(this.el);
    }

    setState(text, state) {
      $(".card-state", this.el).textContent = text;
      this.el.dataset.state = state || "";
    }

    fail(message) {
      const p = $(".card-error", this.el);
      p.textContent = message;
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
      before.src = this.originalUrl;
      before.alt = this.file.name + " (original)";
      const range = $(".compare-range", tile);
      const compare = $(".compare", tile);
      const move = () => compare.style.setProperty("--pos", range.value + "%");
      range.addEventListener("input", move);
      move();
      $(".tiles", this.el).append(tile);
      this.tiles.set(name, tile);
    }

    updateTile(entry) {
      const tile = this.tiles.get(entry.style);
      if (!tile || (tile.dataset.state === entry.state && entry.state !== "pending")) return;
      tile.dataset.state = entry.state;
      const label = {
        pending: entry.last_error ? "retrying" : "waiting",
        rendering: "rendering",
        done: "done",
        rejected: "rejected",
        failed: "failed",
      };
      $(".tile-state", tile).textContent = label[entry.state] || entry.state;
      if (entry.state === "done") {
        const after = $(".compare-after", tile);
        after.alt = this.file.name + " as " + $(".tile-name", tile).textContent;
        after.src = entry.url;
        const link = $(".tile-download", tile);
        link.href = entry.download_url;
        link.download = entry.download_name || "";
        link.hidden = false;
      } else if (entry.state === "rejected" || entry.state === "failed") {
        const p = $(".tile-reason", tile);
        p.textContent = (entry.reason || entry.state) + (entry.message ? ": " + entry.message : "");
        p.hidden = false;
      }
    }

    async start() {
      this.setState("asking", "asking");
      let grant;
      try {
        grant = await api("POST", "/uploads", {
          filename: this.file.name,
          content_type: this.file.type,
          size: this.file.size,
          styles: this.styles,
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
        this.fail(err.message);
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
      const started = Date.now();
      for (;;) {
        let view;
        try {
          view = await api("GET", statusUrl);
        } catch (err) {
          if (err.code === "not_found" || Date.now() - started > POLL_LIMIT_MS) {
            this.fail(err.message);
            return;
          }
          view = null;
        }
        if (view) {
          for (const entry of view.styles) this.updateTile(entry);
          if (view.state === "complete") {
            const rejected = view.styles.filter((s) => s.state !== "done").length;
            this.setState(rejected ? "finished with problems" : "done", rejected ? "problem" : "done");
            return;
          }
          if (view.state === "upload_expired") {
            this.fail("the upload window closed before the photo arrived");
            return;
          }
        }
        if (Date.now() - started > POLL_LIMIT_MS) {
          this.setState("still rendering; reload later", "slow");
          return;
        }
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    }
  }

  function addFiles(files) {
    const styles = chosenStyles();
    if (!styles.length) {
      notice("Choose at least one style first.");
      return;
    }
    notice("");
    for (const file of files) {
      new Card(file, styles).start();  // the API says what it refuses, and why
    }
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

  renderStyleChoice();
  wireDropZone();
})();
