// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

/**
 * The specification's SSH key-based free transport (PT 2.0 draft 1,
 * section 3.2.3) over OpenSSH: the first ptkit transport that owns its
 * connection. It declares helper processes (`ssh -D` on the client, its
 * own `sshd` on the server) that the runtime runs and supervises; keys are
 * Ed25519 in OpenSSH's formats, kept in `local`, and the client's new key
 * travels to the server's operator on `signals`.
 *
 * @example The server's SMETHOD ARGS carry its host key fingerprint
 * ```ts
 * import { ssh } from "@ptkit/ptkit/transports/ssh";
 * import { MemoryStore } from "@ptkit/ptkit/transports";
 * import { ok } from "node:assert";
 *
 * const server = await ssh.server({}, { local: new MemoryStore() });
 * ok(server.clientOptions.fp!.startsWith("SHA256:"));
 * ```
 *
 * @module
 */

export { ssh } from "./_ssh.ts";
