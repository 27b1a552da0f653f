// Copyright the ptkit authors. MIT license.
// Run in headless Chromium by tests/webrtc_turn_test.ts: WebRTC through a
// TURN server only (iceTransportPolicy "relay"). GET /config gives
// `{ good, bad, sizes }` (RTCIceServer lists, message sizes); a peer
// connection with the `bad` servers gathers alone; two with the `good` ones
// connect, exchange data-channel messages both ways, call POST /connected,
// close, call POST /closed, and the report goes to POST /result.

const post = (path, body) =>
  fetch(path, { method: "POST", body: JSON.stringify(body) }).then((r) => r.text());

/** Message `index` of a run with `seed`: `size` bytes of a fixed pattern (the test's). */
function message(seed, index, size) {
  const bytes = new Uint8Array(size);
  for (let j = 0; j < size; j++) bytes[j] = (j * 31 + seed * 7 + index) & 255;
  return bytes;
}

async function sha256(data) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Gather with `iceServers`; resolves once gathering is complete. */
function gather(pc, side, report) {
  return new Promise((resolve) => {
    pc.onicecandidate = (event) => {
      if (event.candidate === null) resolve();
      else if (event.candidate.candidate !== "") report.candidates[side].push(event.candidate);
    };
    pc.onicecandidateerror = (event) =>
      report.errors[side].push({ url: event.url, code: event.errorCode, text: event.errorText });
  });
}

/** Send `sizes` messages from `from` to `to`; the digests of what arrived, in order. */
async function exchange(from, to, seed, sizes) {
  from.binaryType = to.binaryType = "arraybuffer";
  const got = [];
  const done = new Promise((resolve) => {
    to.onmessage = (event) => {
      got.push(event.data);
      if (got.length === sizes.length) resolve();
    };
  });
  sizes.forEach((size, i) => from.send(message(seed, i, size)));
  await done;
  return Promise.all(got.map((data) => sha256(data)));
}

const report = {
  bad: { candidates: [[]], errors: [[]] },
  candidates: [[], []],
  errors: [[], []],
  states: [[], []],
};
try {
  const config = await (await fetch("/config")).json();
  if (config.bad !== undefined) {
    const pc = new RTCPeerConnection({ iceServers: config.bad, iceTransportPolicy: "relay" });
    const gathered = gather(pc, 0, report.bad);
    pc.createDataChannel("bad");
    await pc.setLocalDescription();
    await gathered;
    report.bad.candidates[0] = report.bad.candidates[0].map((c) => c.candidate);
    pc.close();
  }
  const options = { iceServers: config.good, iceTransportPolicy: "relay" };
  const pcs = [new RTCPeerConnection(options), new RTCPeerConnection(options)];
  const gathered = pcs.map((pc, i) => gather(pc, i, report));
  const connected = pcs.map((pc, i) =>
    new Promise((resolve, reject) => {
      pc.onconnectionstatechange = () => {
        report.states[i].push(pc.connectionState);
        if (pc.connectionState === "connected") resolve();
        if (pc.connectionState === "failed") reject(new Error(`peer ${i}: connection failed`));
      };
    })
  );
  const channel0 = pcs[0].createDataChannel("ptkit");
  const channel1 = new Promise((resolve) =>
    pcs[1].ondatachannel = (event) => resolve(event.channel)
  );
  const opened0 = new Promise((resolve) => channel0.onopen = resolve);
  await pcs[0].setLocalDescription();
  await pcs[1].setRemoteDescription(pcs[0].localDescription);
  await pcs[1].setLocalDescription();
  await pcs[0].setRemoteDescription(pcs[1].localDescription);
  await Promise.all(gathered);
  // Trickled after gathering: each side's relay candidates to the other.
  for (const i of [0, 1]) {
    for (const candidate of report.candidates[i]) await pcs[1 - i].addIceCandidate(candidate);
    report.candidates[i] = report.candidates[i].map((c) => c.candidate);
  }
  await Promise.all(connected);
  const channel = await channel1;
  await opened0;
  report.maxMessageSize = pcs[0].sctp.maxMessageSize;
  const sizes = config.sizes.map((size) => size === "max" ? report.maxMessageSize : size);
  report.sizes = sizes;
  report.forward = await exchange(channel0, channel, 1, sizes);
  report.backward = await exchange(channel, channel0, 2, sizes);
  // The pair the transport uses.
  const stats = await pcs[0].getStats();
  for (const transport of stats.values()) {
    if (transport.type !== "transport") continue;
    const pair = stats.get(transport.selectedCandidatePairId);
    const local = stats.get(pair?.localCandidateId);
    const remote = stats.get(pair?.remoteCandidateId);
    report.pair = {
      local: local?.candidateType,
      relayProtocol: local?.relayProtocol,
      remote: remote?.candidateType,
    };
  }
  await post("/connected", {});
  for (const pc of pcs) pc.close();
  await post("/closed", {});
  await post("/result", { report });
} catch (error) {
  await post("/result", { error: `${error?.stack ?? error}; so far: ${JSON.stringify(report)}` });
}
