import { constants } from "node:fs";
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";

/** A short, stable description of a failed file operation. */
export function ioProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case "ENOENT": return "no such file";
    case "EACCES":
    case "EPERM": return "permission denied";
    case "EISDIR": return "is a directory";
    case "ELOOP": return "is a symbolic link";
    default: return code ?? (err instanceof Error ? err.message : String(err));
  }
}

export async function writeFully(fh: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await fh.write(data, offset, data.length - offset, null);
    offset += bytesWritten;
  }
}

/** Makes the directory's entries (a new or renamed file) survive a crash. */
export async function syncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Opens a regular file for reading; O_NONBLOCK so a FIFO planted at the path is refused instead of blocking the open. */
export async function openRegularFile(path: string, flags = 0): Promise<FileHandle> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | flags);
  if (!(await fh.stat()).isFile()) {
    await fh.close();
    throw Object.assign(new Error("not a regular file"), { code: "not a regular file" });
  }
  return fh;
}
