// Copyright the ptkit authors. MIT license.
// Internal: OpenSSL's libcrypto 3 through Deno's FFI, for net/_aead.ts and
// net/_hmac.ts: found where Debian (libssl3), other Linux distributions and
// macOS keep it.

const NAMES = ["libcrypto.so.3", "libcrypto.so", "libcrypto.3.dylib"];

/**
 * Open libcrypto 3 with `symbols`, or `undefined` when FFI is not allowed,
 * the library is missing or lacks one of them.
 */
function openLibcrypto<const S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] | undefined {
  for (const name of NAMES) {
    try {
      return Deno.dlopen(name, symbols).symbols;
    } catch {
      // No permission, or not this name.
    }
  }
  return undefined;
}

/**
 * A getter of what `make` builds from libcrypto 3 with `symbols`: opened at
 * the first call, kept; `undefined` when it cannot be opened or `make`
 * gives `null`.
 */
export function libcryptoPart<const S extends Deno.ForeignLibraryInterface, T>(
  symbols: S,
  make: (lib: Deno.DynamicLibrary<S>["symbols"]) => T | null,
): () => T | undefined {
  let loaded: T | null | undefined;
  return () => {
    if (loaded === undefined) {
      const lib = openLibcrypto(symbols);
      loaded = lib === undefined ? null : make(lib);
    }
    return loaded ?? undefined;
  };
}
