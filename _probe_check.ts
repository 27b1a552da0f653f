import { formatState, generateServerConfig } from "./transports/obfs4/config.ts";
import { bridgeCloseDelay } from "./transports/obfs4/mod.ts";
import { startObfs4proxy, startEcho, freePort } from "./tests/obfs4_live_helpers.ts";
const results: string[] = [];
await Promise.all([0, 1, 2].map(async (k) => {
  const cfg = generateServerConfig(0);
  const d = bridgeCloseDelay(cfg.drbgSeed);
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/obfs4_state.json`, formatState(cfg));
  const echo = startEcho();
  const port = freePort();
  const pt = await startObfs4proxy({ TOR_PT_SERVER_TRANSPORTS: "obfs4", TOR_PT_SERVER_BINDADDR: `obfs4-127.0.0.1:${port}`, TOR_PT_ORPORT: `127.0.0.1:${echo.addr.port}`, TOR_PT_STATE_LOCATION: dir });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const t0 = Date.now();
  await conn.write(crypto.getRandomValues(new Uint8Array(8200)));
  await new Promise((r) => setTimeout(r, 500));
  let extra = 0;
  try { for (let i = 0; i < 10 * (k + 1); i++) { await conn.write(new Uint8Array(1448)); extra += 1448; await new Promise((r) => setTimeout(r, 20)); } } catch { /**/ }
  const buf = new Uint8Array(100);
  let n: number | null = 0;
  try { n = await conn.read(buf); } catch (_e) { n = -1; }
  const el = (Date.now() - t0) / 1000;
  results.push(`predicted ${30 + d} extra=${extra} measured ${el}s read=${n}`);
  conn.close();
  await pt.stop(); await echo.close();
}));
console.log(results.join("\n"));
