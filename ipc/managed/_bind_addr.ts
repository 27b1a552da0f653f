// Copyright the ptkit authors. MIT license.
// This module is browser-compatible.

import { bracketBareIpv6, type HostPort, parseHostPort } from "../../net/address.ts";
import { isIpLiteral } from "../../net/_ip_address.ts";

/**
 * Parse `TOR_PT_SERVER_BINDADDR` / `-bindaddr`: `name-addr:port,...`, split
 * at the first `-`. Addresses must be IP literals (IPv6 in brackets; an
 * unbracketed IPv6 address is read with its last `:` before the port, as
 * goptlib repairs it). Empty items are ignored. A name given twice is an
 * error.
 *
 * @param text The list.
 * @param what What errors call the list: the variable or flag it came from.
 * @returns The address of each transport name, in order.
 * @throws {SyntaxError} On a malformed item, a host name, or a repeated name.
 */
export function parseBindAddr(
  text: string,
  what = "TOR_PT_SERVER_BINDADDR",
): Map<string, HostPort> {
  const result = new Map<string, HostPort>();
  if (text.trim() === "") return result;
  for (const item of text.split(",")) {
    // An empty item (a trailing comma) names nothing: ignored, as in the
    // transport lists.
    if (item.trim() === "") continue;
    const dash = item.indexOf("-");
    if (dash <= 0) {
      throw new SyntaxError(
        `Cannot parse ${what} item ${JSON.stringify(item)}: expected name-addr:port`,
      );
    }
    const name = item.slice(0, dash);
    const addr = bracketBareIpv6(item.slice(dash + 1));
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new SyntaxError(
        `Cannot parse ${what} item ${JSON.stringify(item)}: invalid transport name`,
      );
    }
    let hostPort: HostPort;
    try {
      hostPort = parseHostPort(addr, `${what} address of '${name}'`);
    } catch (error) {
      throw new SyntaxError((error as Error).message, { cause: error });
    }
    if (!isIpLiteral(hostPort.hostname)) {
      throw new SyntaxError(
        `Cannot parse ${what} item ${JSON.stringify(item)}: not an IP address`,
      );
    }
    if (result.has(name)) {
      throw new SyntaxError(`Cannot parse ${what}: '${name}' given twice`);
    }
    result.set(name, hostPort);
  }
  return result;
}
