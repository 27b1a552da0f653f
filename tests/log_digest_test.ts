// Copyright the ptkit authors. MIT license.

// Per-connection LOG lines are digested by kind: a peer that changes the
// numbers in the text it causes (an obfs4 frame's claimed payload length,
// chosen by anyone holding the bridge line) must not get a line per
// connection past the digest.

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import { complaintsOnce, describe, digestLog, lineKind } from "../ipc/managed/_log.ts";

Deno.test("digestLog: lines that differ only in their numbers are one kind (10 at once, then counted)", () => {
  const lines: string[] = [];
  const digested = digestLog((severity, message) => lines.push(`${severity} ${message}`));
  try {
    for (let i = 0; i < 30; i++) {
      digested(
        "warning",
        `obfs4: connection failed: Cannot decode obfs4 packet: invalid payload length ${100 + i}`,
      );
    }
    strictEqual(lines.length, 10, lines.join("\n"));
    strictEqual(
      lines[0],
      "warning obfs4: connection failed: Cannot decode obfs4 packet: invalid payload length 100",
    );
  } finally {
    digested.stop();
  }
  strictEqual(lines.length, 11, lines.join("\n"));
  strictEqual(
    lines[10],
    "warning obfs4: connection failed: Cannot decode obfs4 packet: invalid payload length 129 (20 times since the last report)",
  );
});

Deno.test("digestLog: other texts and other severities are still kinds of their own", () => {
  const lines: string[] = [];
  const digested = digestLog((severity, message) => lines.push(`${severity} ${message}`));
  try {
    for (let i = 0; i < 12; i++) digested("info", "a: connection failed: bad tag");
    for (let i = 0; i < 12; i++) digested("warning", "a: connection failed: bad tag");
    for (let i = 0; i < 12; i++) {
      digested("info", `a: first byte 0x${(0x80 + i).toString(16)} is wrong`);
    }
    strictEqual(lines.length, 30, lines.join("\n"));
  } finally {
    digested.stop();
  }
});

Deno.test("lineKind makes decimal and 0x numbers one placeholder, and keeps words", () => {
  deepStrictEqual(
    [
      lineKind("chunk length 16385 out of range 1-16383"),
      lineKind("first byte 0xc3 starts neither"),
      lineKind("bad tag"),
      lineKind("exceeds the maximum of 65535 (os error 104)"),
    ],
    [
      "chunk length # out of range #-#",
      "first byte # starts neither",
      "bad tag",
      "exceeds the maximum of # (os error #)",
    ],
  );
});

Deno.test("digestLog: lines that differ only in a quoted value are one kind (a SOCKS client chooses the values its arguments' errors quote)", () => {
  const lines: string[] = [];
  const digested = digestLog((severity, message) => lines.push(`${severity} ${message}`));
  try {
    for (let i = 0; i < 30; i++) {
      digested(
        "warning",
        `obfs4: SOCKS connect failed: Transport 'obfs4' rejected its arguments: Cannot configure transport 'obfs4': invalid iat-mode "x${
          String.fromCharCode(97 + i)
        }": expected 0, 1 or 2`,
      );
    }
    strictEqual(lines.length, 10, lines.join("\n"));
  } finally {
    digested.stop();
  }
  strictEqual(lines.length, 11, lines.join("\n"));
  ok(lines[10]!.endsWith("(20 times since the last report)"), lines[10]);
});

Deno.test("lineKind makes a double-quoted value (escapes included) one placeholder, and keeps the words around it", () => {
  deepStrictEqual(
    [
      lineKind(`invalid iat-mode "xy": expected 0, 1 or 2`),
      lineKind(`invalid iat-mode "a\\"b c": expected 0, 1 or 2`),
      lineKind(`invalid user "" and host "h"`),
      lineKind(`Transport 'obfs4' rejected its arguments`),
    ],
    [
      `invalid iat-mode "*": expected #, # or #`,
      `invalid iat-mode "*": expected #, # or #`,
      `invalid user "*" and host "*"`,
      `Transport 'obfs#' rejected its arguments`,
    ],
  );
});

Deno.test("describe replaces a whole IPv4 address and port that a colon follows ('dial 192.0.2.1:443: refused' kept '192.0.2.' before)", () => {
  const cases: [string, string][] = [
    ["dial 192.0.2.1:443: refused", "dial [address]: refused"],
    ["error connecting to 198.51.100.23:80: timed out", "error connecting to [address]: timed out"],
    ["from 203.0.113.77:5555:x", "from [address]:x"],
    ["bind 2001:db8::1 failed", "bind [address] failed"],
    ["dial [2001:db8::1]:443: refused", "dial [address]: refused"],
    ["peer ::ffff:192.0.2.1 left", "peer [address] left"],
    ["peer:2001:db8::1 left", "peer[address] left"],
  ];
  for (const [message, expected] of cases) {
    const described = describe(new Error(message));
    strictEqual(described, expected);
    ok(!/[0-9]{1,3}\.[0-9]{1,3}\./.test(described), described);
  }
});

Deno.test("describe keeps the colon after an unbracketed IPv6 address, as after an IPv4 one (an outbound bind error read 'TOR_PT_OUTBOUND_BIND_ADDRESS_V6 [address] EINVAL')", () => {
  const cases: [string, string][] = [
    [
      "Cannot dial from TOR_PT_OUTBOUND_BIND_ADDRESS_V6 fd00::99: EINVAL (is it an address of this machine?)",
      "Cannot dial from TOR_PT_OUTBOUND_BIND_ADDRESS_V6 [address]: EINVAL (is it an address of this machine?)",
    ],
    [
      "Cannot dial from TOR_PT_OUTBOUND_BIND_ADDRESS_V4 192.0.2.99: EINVAL (is it an address of this machine?)",
      "Cannot dial from TOR_PT_OUTBOUND_BIND_ADDRESS_V4 [address]: EINVAL (is it an address of this machine?)",
    ],
    ["dial ::1: refused", "dial [address]: refused"],
    ["dial 2001:db8::: refused", "dial [address]: refused"],
    ["dial 2001:db8:: refused", "dial [address] refused"],
    ["dial [2001:db8::1]:443: refused", "dial [address]: refused"],
  ];
  for (const [message, expected] of cases) strictEqual(describe(new Error(message)), expected);
});

Deno.test("complaintsOnce: a text is new once, again after the period, and at most max are held", () => {
  let time = 0;
  const isNew = complaintsOnce(1000, 2, () => time);
  deepStrictEqual([isNew("a"), isNew("a"), isNew("b"), isNew("a")], [true, false, true, false]);
  time = 999;
  deepStrictEqual(isNew("a"), false);
  time = 1000;
  deepStrictEqual([isNew("a"), isNew("a")], [true, false]);
  // "c" makes three: the oldest said ("b") is forgotten, "a" is kept.
  deepStrictEqual([isNew("c"), isNew("a"), isNew("b")], [true, false, true]);
});
