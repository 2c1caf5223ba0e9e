import { type MessagePort, receiveMessageOnPort } from "node:worker_threads";
import type { HostCall, HostReply } from "./worker-protocol.ts";

/**
 * Longest sleep of a waiting worker between looks at its port. Only a safety
 * net: the main thread raises the flag after it posted the reply, and the
 * raise wakes the worker at once.
 */
const RECHECK_MS = 1000;

/**
 * A blocking call from a worker to the main thread: MicroPython code is
 * synchronous, the sockets it talks through live on the main thread's event
 * loop. The worker posts the request and sleeps in `Atomics.wait` until the
 * main thread has posted the reply and raised the flag. It waits as long as
 * the answer takes (a socket read can wait for the broker).
 *
 * The main thread answers in three steps (post, raise, notify) and can be
 * preempted between them under load, so the notify (or the raise) of one call
 * can land while the worker already waits for the next call's answer. Woken
 * without an answer, the worker lowers the flag, looks at the port once more
 * (a reply posted before the flag went up is there) and sleeps again.
 */
export function callHostSync(port: MessagePort, flag: Int32Array, request: HostCall): HostReply {
  Atomics.store(flag, 0, 0);
  port.postMessage(request);
  for (;;) {
    Atomics.wait(flag, 0, 0, RECHECK_MS);
    let reply = receiveMessageOnPort(port);
    if (reply) return reply.message as HostReply;
    Atomics.store(flag, 0, 0);
    reply = receiveMessageOnPort(port);
    if (reply) return reply.message as HostReply;
  }
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
