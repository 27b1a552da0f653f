// Copyright the ptkit authors. MIT license.

// The mutation table stays applicable: every entry's search text occurs
// exactly once in its file and its test files exist, so that
// `deno task mutation` mutates what it says (a moved or edited file shows
// here, in the default test run, instead of as a silently skipped entry).

import { deepStrictEqual, ok } from "node:assert";
import { MUTATIONS } from "./mutation/mutations.ts";
import { staleReason } from "./mutation/run.ts";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("every mutation in tests/mutation/mutations.ts applies to exactly one place and names existing tests", () => {
  const stale = MUTATIONS.flatMap((m) => {
    const why = staleReason(ROOT, m);
    return why === undefined ? [] : [`${m.id}: ${why}`];
  });
  deepStrictEqual(stale, []);
  const ids = MUTATIONS.map((m) => m.id);
  deepStrictEqual(ids.filter((id, i) => ids.indexOf(id) !== i), [], "duplicate ids");
  ok(MUTATIONS.length >= 30, `${MUTATIONS.length} mutations`);
  for (const kind of ["authentication", "authorization", "bound", "policy"]) {
    ok(MUTATIONS.some((m) => m.kind === kind), `no ${kind} mutation`);
  }
});
