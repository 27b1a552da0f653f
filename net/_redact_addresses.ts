// Copyright the ptkit authors. MIT license.
// Internal: the one rule that takes IP addresses and ports out of text bound
// for logs (LOG and STATUS lines, a helper's output): no client address is
// ever printed.

/**
 * The text with every IP address and port it names replaced: IPv4 and IPv6
 * literals (bracketed or not, with a zone and a port or without) become
 * `[address]`, and the port sshd writes after a client's address
 * (`192.0.2.7 port 51234`) becomes `port [port]`; other ports (`Invalid port
 * 0 for --target`) are the operator's and stay.
 *
 * An IPv6 literal never starts inside an IPv4 one or a number, so the
 * `1:443:` of `192.0.2.1:443: refused` is not taken for one; a colon that
 * follows one (`fd00::99: EINVAL`) is matched with it and put back, since an
 * odd number of colons cannot end an address.
 *
 * @param text A message or one line of output.
 * @returns The text without addresses.
 */
export function redactAddresses(text: string): string {
  return text
    // Bracketed, with the port after the bracket: `[2001:db8::1]:22`,
    // `[fe80::1%eth0]:22`, and `[192.0.2.1]:22` as sshd writes IPv4 too.
    .replace(/\[[0-9A-Fa-f:.%\w]*[:.][0-9A-Fa-f:.%\w]*\](:\d+)?/g, "[address]")
    .replace(
      /(?<![0-9.])[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(%\w+)?(:[0-9]+)?/g,
      (match) => /:*$/.exec(match)![0].length % 2 === 1 ? "[address]:" : "[address]",
    )
    .replace(/\b[0-9]{1,3}(\.[0-9]{1,3}){3}(:[0-9]+)?\b/g, "[address]")
    // sshd's `from 192.0.2.7 port 51234`: a port that follows an address.
    .replace(/\[address\] port \d+/g, "[address] port [port]");
}
