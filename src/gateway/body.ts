import type { IncomingMessage } from "node:http";
import { GatewayError } from "./errors.ts";

export const tooLarge = (limit: number) => new GatewayError("request_too_large", `request body is larger than the ${limit}-byte limit`);

/** The client went away before its body was complete: nothing to answer, and not a fault of the gateway. */
export class ClientAbort extends Error {
  constructor() {
    super("the client closed the connection before its request body was complete");
    this.name = "ClientAbort";
  }
}

/**
 * Reads the whole request body, refusing it (413) as soon as it passes `limit` bytes and (408) when it has not all
 * arrived `timeoutMs` after reading began: a caller with a valid certificate must not hold a connection and a
 * buffer forever by drip-feeding its body. Event listeners rather than `for await`, because leaving an async
 * iterator early destroys the socket, and a reset would hide the status.
 */
export function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const fail = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return fail(tooLarge(limit));
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = () => fail(new ClientAbort());
    const onClose = () => {
      if (!req.complete) fail(new ClientAbort());
    };
    const timer = setTimeout(() => fail(new GatewayError("request_timeout", `the request body did not arrive within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    const cleanup = () => {
      clearTimeout(timer);
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}
