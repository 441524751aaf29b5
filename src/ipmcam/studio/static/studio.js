"use strict";
// The studio page: shows /api/state (polled by stream.js), sends changes to /api/settings,
// /api/preset/NAME and /api/reference.
// Sliders coalesce: one settings request is in flight at a time, carrying the newest values.

const $ = (id) => document.getElementById(id);
const REGIONS = ["lips", "eyes", "skin"];
const HELD_MS = 1500; // a control the user just moved is not overwritten by a poll this soon

const touched = new Map(); // control id -> when the user last changed it
let pending = null; // settings not sent yet
let sending = false;

function say(text, error = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function held(id) {
  return Date.now() - (touched.get(id) || 0) < HELD_MS;
}

function setSlider(id, value) {
  if (held(id)) return;
  $(id).value = value;
  $(`${id}-value`).value = Number(value).toFixed(2);
}

function setToggle(id, value) {
  if (!held(id)) $(id).checked = value;
}

function show(state) {
  setSlider("intensity", state.intensity);
  for (const region of REGIONS) setSlider(region, state.strengths[region]);
  setToggle("enabled", state.enabled);
  setToggle("split", state.split);
  setToggle("mirror", state.mirror);
  $("reference").textContent = state.reference;
  const stats = {
    engine: state.engine, backend: state.backend, precision: state.precision,
    fps: state.fps.toFixed(1), latency: state.latency_ms === null ? "–" : `${state.latency_ms.toFixed(0)} ms`,
    faces: String(state.faces),
  };
  for (const [name, text] of Object.entries(stats)) document.querySelector(`[data-stat=${name}]`).textContent = text;
  for (const button of $("gallery").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(state.reference === `preset ${button.dataset.preset}`));
  }
}

function showOrSay(state, error) {
  if (error) {
    say(`studio unreachable: ${error.message}`, true);
    $("status").dataset.lost = "1";
    return;
  }
  show(state);
  if ($("status").dataset.lost) say("");
  delete $("status").dataset.lost;
}

async function flush() {
  sending = true;
  while (pending) {
    const body = pending;
    pending = null;
    try {
      show(await api("/api/settings", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      }));
    } catch (error) {
      say(error.message, true);
    }
  }
  sending = false;
}

function change(id, settings) {
  touched.set(id, Date.now());
  const merged = { ...pending, ...settings };
  if (settings.strengths) merged.strengths = { ...pending?.strengths, ...settings.strengths };
  pending = merged;
  if (!sending) flush();
}

async function upload(file) {
  if (!file) return;
  say(`loading ${file.name}…`);
  const form = new FormData();
  form.append("file", file);
  try {
    const state = await api("/api/reference", { method: "POST", body: form });
    show(state);
    say(`look: ${state.reference}`);
  } catch (error) {
    say(`cannot use ${file.name}: ${error.message}`, true);
  }
}

async function choosePreset(name) {
  say(`loading preset ${name}…`);
  try {
    const state = await api(`/api/preset/${encodeURIComponent(name)}`, { method: "POST" });
    show(state);
    say(`look: ${state.reference}`);
  } catch (error) {
    say(error.message, true);
  }
}

async function buildGallery() {
  const presets = await api("/api/presets");
  const gallery = $("gallery");
  for (const preset of presets) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.preset = preset.name;
    button.title = preset.description;
    button.setAttribute("role", "listitem");
    button.setAttribute("aria-pressed", "false");
    const image = document.createElement("img");
    image.src = `/api/presets/${encodeURIComponent(preset.name)}.jpg`;
    image.alt = "";
    image.loading = "lazy";
    const label = document.createElement("span");
    label.textContent = preset.name;
    button.append(image, label);
    button.addEventListener("click", () => choosePreset(preset.name));
    gallery.append(button);
  }
}

function wire() {
  $("intensity").addEventListener("input", (event) => {
    $("intensity-value").value = Number(event.target.value).toFixed(2);
    change("intensity", { intensity: Number(event.target.value) });
  });
  for (const region of REGIONS) {
    $(region).addEventListener("input", (event) => {
      $(`${region}-value`).value = Number(event.target.value).toFixed(2);
      change(region, { strengths: { [region]: Number(event.target.value) } });
    });
  }
  for (const id of ["enabled", "split", "mirror"]) {
    $(id).addEventListener("change", (event) => change(id, { [id]: event.target.checked }));
  }
  $("file").addEventListener("change", (event) => upload(event.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    upload(event.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") $("file").click();
  });
}

wire();
buildGallery().catch((error) => say(`no presets: ${error.message}`, true));
keepStreaming($("preview"), showOrSay);
