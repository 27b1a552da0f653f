// Copyright the ptkit authors. MIT license.
// Where ptkit deliberately differs from the test tables of goptlib,
// lyrebird (obfs4) and arti: one line each. The README section "Where ptkit
// differs from goptlib and lyrebird" holds the same lines, which
// reference_tables_test.ts checks.

/** The reason for each deliberate difference, by id. */
export const DIFFERENCES = {
  version2:
    "PT 2.0: ptkit also speaks version 2 and picks it whenever the parent offers it; goptlib knows only version 1.",
  freePort:
    "A transport without a `TOR_PT_SERVER_BINDADDR` entry gets a free port on 127.0.0.1, as the spec allows; goptlib drops it.",
  proxyStrict:
    "`TOR_PT_PROXY` must be `socks5`, `socks4a` or `http` with an IP literal host, a port and no path, as lyrebird requires; goptlib's parser also accepts host names, paths and unknown schemes.",
  argsAtConnect:
    "SOCKS arguments that do not parse are refused at CONNECT with reply 0x12 (PT 2.0) after authentication succeeds; goptlib and lyrebird fail the RFC 1929 authentication with status 01.",
  emptyUserPass:
    "An empty RFC 1929 user name or password is accepted (curl sends an empty password): the arguments are what the two hold together, checked at CONNECT; goptlib and lyrebird refuse the authentication.",
  oneValuePerKey:
    "Transport options hold one value per key, the first (what goptlib's `Args.Get` returns), so SMETHOD ARGS print a key once; goptlib prints it once per value.",
  emptyKeyword:
    "An empty keyword is refused when writing a line, since no line of the protocol has one; goptlib's keyword check lets it through.",
  delReplaced:
    "DEL (0x7f) becomes `?` in IPC lines like every other non-printable character; goptlib passes it through.",
  noOctal:
    "`LOG` and `STATUS` C strings write control and non-ASCII characters as `?`, not as octal escapes (arti refuses those), so such characters do not survive the round trip.",
  stateDefault:
    "Without `TOR_PT_STATE_LOCATION` the state directory is the working directory (PT 2.1 and later); goptlib's `MakeStateDir` fails.",
  readsOctal:
    "ptkit's adapter reads octal escapes in `LOG` and `STATUS` values, as goptlib-based PTs write them, and keeps the character after any other backslash; arti refuses `\\0` to `\\8`.",
  equalsInArgsValue:
    "An unescaped `=` in an SMETHOD ARGS value stays in the value, as goptlib reads `k=v` lists; arti refuses the line.",
  socks4aEmptyName:
    "A SOCKS4a request with an empty host name is refused (reply 0x5b), as there is nothing to connect to; goptlib 0.5 accepted it.",
  emptyTransportCommand:
    "The Extended ORPort client sends no `TRANSPORT` command for an empty transport name, as goptlib's metadata step does; goptlib's low-level writer would send an empty one.",
} as const;

/** The id of a deliberate difference. */
export type Difference = keyof typeof DIFFERENCES;
