/**
 * Atomic file and folder replacement. A file is written to a temporary file in the target's directory, fsynced,
 * then renamed over the target: rename() within one directory is atomic on POSIX filesystems (and replaces the
 * target on Windows), so a reader sees either the old file or the complete new one, never a half-written file, even
 * if the process is killed or the machine loses power mid-save. A folder (a model, an adapter, a checkpoint) is
 * written whole into a temporary sibling folder and swapped in with two renames, so that its files never mix two
 * saves. Temporaries of a killed save are cleaned up (and an interrupted swap finished or undone) on the next save.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join, resolve, sep } from "node:path";
import { randomBytes } from "node:crypto";

/** What writeFileAtomic accepts: text (UTF-8), bytes, or a stream (iterable) of byte chunks. */
export type AtomicData = string | Uint8Array | Iterable<Uint8Array>;

/** Options of writeFileAtomic. */
export interface AtomicWriteOptions {
  /** File mode of a newly created file (default 0o666 minus the umask, like fs.writeFile). */
  mode?: number;
}

// One write() call is capped below 2 GiB (libuv and some kernels refuse or split larger writes).
const MAX_WRITE = 1 << 30;

/**
 * Atomically replace (or create) `path` with `data`: temp file in the same directory, fsync, rename.
 * Synchronous, like the rest of the engine: callers (model/adapter/config savers) need no await to be safe.
 */
export function writeFileAtomic(path: string, data: AtomicData, opts: AtomicWriteOptions = {}): void {
  const dir = dirname(path);
  // Same directory: rename() is only atomic within one filesystem. The leading dot keeps the temp file out of
  // casual listings; pid + random suffix keeps concurrent writers of the same target apart.
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  removeStaleFiles(dir);
  let fd: number;
  try {
    fd = openSync(tmp, "wx", opts.mode ?? 0o666);
  } catch (err) {
    throw new Error(
      `cannot save ${path}: creating the temporary file ${tmp} failed (${(err as Error).message}). ` +
        `Hint: check that the directory ${dir} exists and is writable; the previous ` +
        `${basename(path)} (if any) is unchanged.`,
      { cause: err },
    );
  }
  let renamed = false;
  try {
    try {
      if (typeof data === "string") writeAll(fd, Buffer.from(data, "utf8"));
      else if (data instanceof Uint8Array) writeAll(fd, data);
      else for (const chunk of data) writeAll(fd, chunk);
      // Flush file contents before the rename makes them visible; otherwise a crash could leave the new name
      // pointing at an empty or partial file.
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    renamed = true;
    syncDir(dir);
  } catch (err) {
    if (!renamed) {
      try {
        unlinkSync(tmp);
      } catch {
        // Already gone or never fully created: nothing to clean up.
      }
    }
    throw new Error(
      `saving ${path} failed: ${(err as Error).message}. ` +
        (renamed
          ? "The new file is in place but its directory entry may not be on disk yet."
          : `The previous ${basename(path)} (if any) is unchanged and the temporary file was removed.`),
      { cause: err },
    );
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    const n = Math.min(bytes.length - done, MAX_WRITE);
    const written = writeSync(fd, bytes, done, n);
    if (written <= 0) throw new Error("write() made no progress (disk full?)");
    done += written;
  }
}

/** fsync a directory so that the rename itself survives a crash; not possible on every platform, so best effort. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Windows cannot open directories, and some filesystems refuse fsync on them: the rename is still done.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

// Names of the temporaries: files ".name.<pid>.<hex>.tmp"; folders ".name.tmp-<pid>-<hex>" (the new contents being
// written) and ".name.old-<pid>-<hex>" (the previous folder, during the swap). The pid tells a dead writer's leftovers.
const FILE_TMP = /^\.(.+)\.(\d+)\.[0-9a-f]{12}\.tmp$/;
const FOLDER_TMP = /^\.(.+)\.tmp-(\d+)-[0-9a-f]{12}$/;
const FOLDER_OLD = /^\.(.+)\.old-(\d+)-[0-9a-f]{12}$/;
// Written into the new folder before the swap: the previous folder's entries to move over after it.
const CARRY_OVER_LIST = ".carry-over.json";

/** Options of writeFolderAtomic. */
export interface FolderWriteOptions {
  /**
   * Which entries of the folder being replaced survive when the new contents do not include them (moved over after
   * the swap, e.g. checkpoints and tokenizer files beside an adapter); by default none: the folder is replaced whole.
   */
  carryOver?: (name: string) => boolean;
}

/**
 * Create or replace the folder `dir` as a whole: `fill(tmpDir)` writes the new contents into a temporary sibling
 * folder, which is then swapped in by renaming `dir` aside and the temporary folder to `dir`. A reader never sees a
 * mix of old and new files; a kill between the two renames leaves `dir` briefly absent, and the next save (or
 * recoverInterruptedSaves) restores it. Where `dir` cannot be renamed (the working directory or one of its parents,
 * a mount point, a folder held open on Windows) the new files are moved in one by one, each atomically.
 */
export function writeFolderAtomic(dir: string, fill: (tmpDir: string) => void, opts: FolderWriteOptions = {}): void {
  const target = existsSync(dir) ? realpathSync(dir) : resolve(dir);
  const parent = dirname(target),
    name = basename(target);
  mkdirSync(parent, { recursive: true });
  recoverInterruptedSaves(parent);
  const suffix = `${process.pid}-${randomBytes(6).toString("hex")}`;
  const tmp = join(parent, `.${name}.tmp-${suffix}`);
  mkdirSync(tmp);
  try {
    fill(tmp);
    if (existsSync(target)) {
      // Carried-over files get a second name (a hard link) in the new folder, so they never go missing; folders (and
      // files on filesystems without hard links) are listed and moved over right after the swap.
      const carried = readdirSync(target).filter((e) => !existsSync(join(tmp, e)) && (opts.carryOver?.(e) ?? false));
      const moveLater = carried.filter((e) => !linked(join(target, e), join(tmp, e)));
      if (moveLater.length > 0) writeFileAtomic(join(tmp, CARRY_OVER_LIST), JSON.stringify(moveLater));
    }
    syncDir(tmp);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  if (!existsSync(target)) {
    renameSync(tmp, target);
    syncDir(parent);
    return;
  }
  const old = join(parent, `.${name}.old-${suffix}`);
  if (!swapAside(target, old)) {
    replaceInPlace(tmp, target, opts.carryOver ?? (() => false));
    return;
  }
  renameSync(tmp, target);
  syncDir(parent);
  finishSwap(old, target);
}

/** Hard-link the file `from` as `to`; false for folders or where links are not possible. */
function linked(from: string, to: string): boolean {
  try {
    if (!statSync(from).isFile()) return false;
    linkSync(from, to);
    return true;
  } catch {
    return false;
  }
}

/** Rename `target` to `old`; false where the folder cannot be renamed (then it is updated in place). */
function swapAside(target: string, old: string): boolean {
  const cwd = process.cwd();
  if (cwd === target || cwd.startsWith(target + sep)) return false;
  try {
    renameSync(target, old);
    return true;
  } catch (err) {
    if (["EBUSY", "EXDEV", "EPERM", "EACCES"].includes((err as NodeJS.ErrnoException).code ?? "")) return false;
    throw err;
  }
}

/** After the swap: move over the entries listed in the new folder's carry-over list, then delete the previous folder. */
function finishSwap(old: string, target: string): void {
  const list = join(target, CARRY_OVER_LIST);
  if (existsSync(list)) {
    const names = JSON.parse(readFileSync(list, "utf8")) as string[];
    moveEntries(old, target, (e) => names.includes(e));
    unlinkSync(list);
  }
  rmSync(old, { recursive: true, force: true });
}

/** The fallback where `target` cannot be renamed: each new entry renamed over the old one, then the dropped ones removed. */
function replaceInPlace(tmp: string, target: string, carryOver: (name: string) => boolean): void {
  rmSync(join(tmp, CARRY_OVER_LIST), { force: true });
  const fresh = new Set(readdirSync(tmp));
  for (const e of fresh) {
    const dst = join(target, e);
    if (statSync(join(tmp, e)).isDirectory()) rmSync(dst, { recursive: true, force: true });
    renameSync(join(tmp, e), dst);
  }
  rmSync(tmp, { recursive: true, force: true });
  for (const e of readdirSync(target))
    if (!carryOver(e) && !fresh.has(e)) rmSync(join(target, e), { recursive: true, force: true });
  syncDir(target);
}

/** Rename the entries of `from` that `to` lacks and `take` accepts into `to`. */
function moveEntries(from: string, to: string, take: (name: string) => boolean): void {
  for (const e of readdirSync(from)) if (take(e) && !existsSync(join(to, e))) renameSync(join(from, e), join(to, e));
  syncDir(to);
}

/**
 * Clean up after saves killed in `dir`: remove their temporary files and folders, and finish (or, when the folder is
 * missing, undo) an interrupted folder swap. Leftovers of writers still running are left alone.
 */
export function recoverInterruptedSaves(dir: string): void {
  for (const e of entriesOf(dir)) {
    const path = join(dir, e);
    const tmp = FILE_TMP.exec(e) ?? FOLDER_TMP.exec(e);
    if (tmp && writerIsGone(tmp[2]!)) rmSync(path, { recursive: true, force: true });
    const old = FOLDER_OLD.exec(e);
    if (old && writerIsGone(old[2]!)) {
      const target = join(dir, old[1]!);
      if (existsSync(target)) finishSwap(path, target);
      else {
        renameSync(path, target);
        rmSync(join(target, CARRY_OVER_LIST), { force: true });
      }
    }
  }
}

/** Remove temporary files of killed writeFileAtomic calls from `dir`. */
function removeStaleFiles(dir: string): void {
  for (const e of entriesOf(dir)) {
    const m = FILE_TMP.exec(e);
    if (m && writerIsGone(m[2]!)) rmSync(join(dir, e), { force: true });
  }
}

function entriesOf(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return []; // a missing folder has nothing to clean; writing into it reports the real problem
  }
}

/** Whether the process that made a temporary is gone (this process's own are in use: saves can nest). */
function writerIsGone(pid: string): boolean {
  if (Number(pid) === process.pid) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "EPERM";
  }
}
