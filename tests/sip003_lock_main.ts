// Copyright the ptkit authors. MIT license.
// main.ts's SIP003 plugin (runSip003) with the state directory's lock
// traced, for tests/sip003_test.ts: it prints `locked` when a file is
// flock'ed, `unlocked` when that file is closed (which releases the lock)
// and the plugin's own stderr lines, and exits once the lock is released
// and the client's options file was reported (written or refused).

import { runSip003 } from "../ipc/managed/_sip003.ts";

const encoder = new TextEncoder();
const trace = (text: string) => Deno.stderr.writeSync(encoder.encode(`${text}\n`));
let unlocked = false;
let reported = false;
const exitWhenDone = () => {
  if (unlocked && reported) Deno.exit(0);
};

const locked = new WeakSet<Deno.FsFile>();
const proto = Deno.FsFile.prototype;
const lock = proto.lock;
proto.lock = async function (this: Deno.FsFile, exclusive?: boolean) {
  await lock.call(this, exclusive);
  locked.add(this);
  trace("locked");
};
const close = proto.close;
proto.close = function (this: Deno.FsFile) {
  close.call(this);
  if (!locked.delete(this)) return;
  trace("unlocked");
  unlocked = true;
  // After the run's next steps (the report may follow at once).
  setTimeout(exitWhenDone, 0);
};

await runSip003({
  getEnv: (name) => Deno.env.get(name),
  stderr: (text) => {
    trace(text.trimEnd());
    if (/(Wrote|Cannot \w+ state file) /.test(text)) {
      reported = true;
      exitWhenDone();
    }
  },
});
