"use strict";
// Output only: the stream, reopened by itself when the studio restarts (an OBS source never needs a refresh).
keepStreaming(document.getElementById("stream"));
