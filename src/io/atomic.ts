/**
 * Atomic file replacement: write everything to a temporary file in the target's directory, fsync it, then
 * rename it over the target. rename() within one directory is atomic on POSIX filesystems (and replaces the
 * target on Windows), so a reader sees either the old file or the complete new one, never a half-written file,
 * even if the process is killed or the machine loses power mid-save.
 */
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
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
  let fd: number;
  try {
    fd = openSync(tmp, "wx", opts.mode ?? 0o666);
  } catch (err) {
    throw new Error(
      `cannot save ${path}: creating the temporary file ${tmp} failed (${(err as Error).message}). ` +
        `Hint: check that the directory ${dir} exists and is writable; the previous ${basename(path)} (if any) is unchanged.`,
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
