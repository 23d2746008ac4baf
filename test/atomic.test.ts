/** io/atomic writeFolderAtomic: whole-folder replacement, carried-over entries, failures, and recovery after a kill. */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { recoverInterruptedSaves, writeFolderAtomic } from "../src/io/atomic.js";
import { tempDirs } from "./helpers.js";

const dirs = tempDirs("peft-ts-atomic-");
after(() => dirs.removeAll());

/** The pid of a process that has exited: the writer of a killed save. */
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!;

function folder(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [f, readFileSync(join(dir, f), "utf8")]),
  );
}

describe("writeFolderAtomic", () => {
  it("replaces the folder whole, carrying over only the entries asked for", () => {
    const dir = join(dirs.make(), "adapter");
    writeFolderAtomic(dir, (tmp) => {
      writeFileSync(join(tmp, "weights"), "1");
      writeFileSync(join(tmp, "extra-of-save-1"), "x");
    });
    writeFileSync(join(dir, "notes.txt"), "mine");
    writeFolderAtomic(dir, (tmp) => writeFileSync(join(tmp, "weights"), "2"), { carryOver: (f) => f === "notes.txt" });
    assert.deepEqual(folder(dir), { "notes.txt": "mine", weights: "2" });
    assert.deepEqual(readdirSync(join(dir, "..")), ["adapter"], "no temporaries left");
  });

  it("a failing fill leaves the previous folder as it was and no temporary", () => {
    const parent = dirs.make(),
      dir = join(parent, "m");
    writeFolderAtomic(dir, (tmp) => writeFileSync(join(tmp, "weights"), "old"));
    assert.throws(
      () =>
        writeFolderAtomic(dir, (tmp) => {
          writeFileSync(join(tmp, "weights"), "new");
          throw new Error("disk full");
        }),
      /disk full/,
    );
    assert.deepEqual(folder(dir), { weights: "old" });
    assert.deepEqual(readdirSync(parent), ["m"]);
  });

  it(
    "recovery restores a folder killed between the two renames and finishes a swap killed " + "before its carry-over",
    () => {
      const parent = dirs.make(),
        pid = deadPid();
      // Killed between renames: only the previous folder (renamed aside) and the new one (still temporary) exist.
      mkdirSync(join(parent, `.a.old-${pid}-0123456789ab`));
      writeFileSync(join(parent, `.a.old-${pid}-0123456789ab`, "weights"), "old");
      mkdirSync(join(parent, `.a.tmp-${pid}-0123456789ab`));
      // Killed after the swap: the new folder lists what it still has to take over from the previous one.
      mkdirSync(join(parent, "b"));
      writeFileSync(join(parent, "b", "weights"), "new");
      writeFileSync(join(parent, "b", ".carry-over.json"), JSON.stringify(["notes.txt"]));
      mkdirSync(join(parent, `.b.old-${pid}-0123456789ab`));
      writeFileSync(join(parent, `.b.old-${pid}-0123456789ab`, "notes.txt"), "mine");
      writeFileSync(join(parent, `.b.old-${pid}-0123456789ab`, "weights"), "old");
      // A file write killed before its rename.
      writeFileSync(join(parent, `.c.${pid}.0123456789ab.tmp`), "");
      // A live writer's temporaries are not touched.
      mkdirSync(join(parent, `.d.tmp-${process.pid}-0123456789ab`));
      recoverInterruptedSaves(parent);
      assert.deepEqual(readdirSync(parent).sort(), [`.d.tmp-${process.pid}-0123456789ab`, "a", "b"]);
      assert.deepEqual(folder(join(parent, "a")), { weights: "old" });
      assert.deepEqual(folder(join(parent, "b")), { "notes.txt": "mine", weights: "new" });
    },
  );

  it("a folder that cannot be renamed (the working directory) is updated in place", () => {
    const dir = dirs.make(),
      cwd = process.cwd();
    writeFolderAtomic(dir, (tmp) => writeFileSync(join(tmp, "weights"), "1"));
    writeFileSync(join(dir, "weights.bin"), "stale");
    process.chdir(dir);
    try {
      writeFolderAtomic(dir, (tmp) => writeFileSync(join(tmp, "weights"), "2"));
    } finally {
      process.chdir(cwd);
    }
    assert.deepEqual(folder(dir), { weights: "2" });
    assert.ok(existsSync(dir));
  });
});
