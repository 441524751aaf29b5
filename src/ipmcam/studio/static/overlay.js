"use strict";
// Reconnect the stream when the studio restarts, so an OBS source never needs a manual refresh.
const stream = document.getElementById("stream");
stream.addEventListener("error", () => {
  setTimeout(() => { stream.src = "/stream.mjpg?t=" + Date.now(); }, 2000);
});
