import "../mod.ts";
