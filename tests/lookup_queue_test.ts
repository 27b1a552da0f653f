// Copyright the ptkit authors. MIT license.

// The bound on name lookups remote clients ask for (ipc/socks/_lookup_queue.ts):
// in all, per source, who goes next, and how long one waits.

import { deepStrictEqual, rejects, strictEqual } from "node:assert";
import { LookupQueue } from "../ipc/socks/_lookup_queue.ts";

const turn = () => new Promise((done) => setTimeout(done, 0));

Deno.test("LookupQueue runs at most max lookups, and a freed place goes to the source running the fewest", async () => {
  const queue = new LookupQueue({ max: 4, perSource: 3, waitMs: 60_000 });
  const started: string[] = [];
  const answers: (() => void)[] = [];
  const lookup = (name: string) => () => {
    started.push(name);
    return new Promise<string>((done) => answers.push(() => done(name)));
  };
  const runs = [
    ...["a1", "a2", "a3", "a4"].map((name) => queue.run("a", lookup(name))),
    queue.run("b", lookup("b1")),
    queue.run("c", lookup("c1")),
  ];
  await turn();
  // a4 waits for a's own bound; b1 takes the last place; c1 waits for one.
  deepStrictEqual(started, ["a1", "a2", "a3", "b1"]);
  deepStrictEqual([queue.running, queue.waiting], [4, 2]);
  answers[0]!(); // a1 ends: c1 (none running) goes before a4 (two running).
  await turn();
  deepStrictEqual(started, ["a1", "a2", "a3", "b1", "c1"]);
  answers[1]!();
  await turn();
  deepStrictEqual(started, ["a1", "a2", "a3", "b1", "c1", "a4"]);
  while (answers.length < 6) await turn();
  answers.slice(2).forEach((answer) => answer());
  deepStrictEqual(await Promise.all(runs), ["a1", "a2", "a3", "a4", "b1", "c1"]);
  deepStrictEqual([queue.running, queue.waiting], [0, 0]);
});

Deno.test("LookupQueue fails a lookup that waits too long without running it", async () => {
  const queue = new LookupQueue({ max: 1, perSource: 1, waitMs: 20 });
  let answer!: () => void;
  const first = queue.run("a", () => new Promise<void>((done) => answer = done));
  let ran = false;
  await rejects(
    queue.run("b", () => {
      ran = true;
      return Promise.resolve();
    }),
    /No turn to look the name up within 20 ms/,
  );
  strictEqual(ran, false);
  strictEqual(queue.waiting, 0);
  answer();
  await first;
  strictEqual(queue.running, 0);
});

Deno.test("LookupQueue bounds the lookups waiting in line, for one source and in all", async () => {
  const queue = new LookupQueue({
    max: 1,
    perSource: 1,
    waitMs: 60_000,
    maxWaitingPerSource: 3,
    maxWaiting: 4,
  });
  let answer!: () => void;
  const first = queue.run("x", () => new Promise<void>((done) => answer = done));
  const ran: string[] = [];
  const lookup = (name: string) => () => {
    ran.push(name);
    return Promise.resolve(name);
  };
  const a = ["a1", "a2", "a3"].map((name) => queue.run("a", lookup(name)));
  // A fourth from a is refused at once: three of its lookups wait already.
  await rejects(queue.run("a", lookup("a4")), /Too many name lookups waiting for one client/);
  const b1 = queue.run("b", lookup("b1"));
  strictEqual(queue.waiting, 4);
  // The line is full: a (three waiting, two more than c's none) gives up its oldest.
  const c1 = queue.run("c", lookup("c1"));
  await rejects(a[0]!, /given up for another client's/);
  strictEqual(queue.waiting, 4);
  // Now a holds two, b and c one each: nobody holds two more than b, so a second b fails.
  await rejects(queue.run("b", lookup("b2")), /Too many name lookups waiting$/);
  answer();
  await first;
  deepStrictEqual(await Promise.all([a[1]!, a[2]!, b1, c1]), ["a2", "a3", "b1", "c1"]);
  deepStrictEqual(ran.sort(), ["a2", "a3", "b1", "c1"]);
  deepStrictEqual([queue.running, queue.waiting], [0, 0]);
});

Deno.test("LookupQueue takes a waiting lookup whose connection closed out of the line at once", async () => {
  const queue = new LookupQueue({ max: 1, waitMs: 60_000 });
  let finish!: () => void;
  const first = queue.run("a", () => new Promise<void>((done) => finish = done));
  const stop = new AbortController();
  const started: string[] = [];
  const waiting = queue.run("b", () => Promise.resolve(void started.push("b")), stop.signal);
  await turn();
  strictEqual(queue.waiting, 1);
  stop.abort(new Error("closed"));
  await rejects(waiting, /closed/);
  // Out of the line before its turn came, and never run.
  strictEqual(queue.waiting, 0);
  finish();
  await first;
  await turn();
  deepStrictEqual([started, queue.running], [[], 0]);
  // An aborted signal never enters the line.
  await rejects(queue.run("c", () => Promise.resolve(), stop.signal), /closed/);
});
