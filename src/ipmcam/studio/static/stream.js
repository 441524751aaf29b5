"use strict";
// Keeps an <img> showing /stream.mjpg across studio restarts. A stream that ends fires no event in the
// browser, so the studio's state is polled instead: once the studio answers again after a silence, or
// answers as another run of the studio, the stream is opened anew. onState gets each state, or the error.

const POLL_MS = 1000;
const ANSWER_MS = 3000; // a poll not answered by then counts as lost (a request can hang across a restart)

function keepStreaming(image, onState = () => {}) {
  let lost = false;
  let run = null;
  async function poll() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), ANSWER_MS);
    try {
      const response = await fetch("/api/state", { credentials: "same-origin", signal: abort.signal });
      const state = await response.json();
      if (!response.ok) throw new Error(state.error || `${response.status} ${response.statusText}`);
      if (lost || (run !== null && state.run !== run)) image.src = `/stream.mjpg?t=${Date.now()}`;
      lost = false;
      run = state.run;
      onState(state, null);
    } catch (error) {
      lost = true;
      onState(null, error);
    } finally {
      clearTimeout(timer);
      setTimeout(poll, POLL_MS);
    }
  }
  poll();
}
