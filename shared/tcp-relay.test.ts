import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { WindowBudget } from "./flow.ts";
import { TunnelClose_Reason, TunnelCloseSchema, TunnelDataSchema } from "./gen/tunnel_pb.ts";
import { decodeEnvelope } from "./protocol.ts";
import { type ByteSocket, type TcpCarrier, TcpRelay } from "./tcp-relay.ts";

/** A socket that takes `room` bytes until told to drain, and records everything done to it. */
class FakeSocket implements ByteSocket {
  written: number[] = [];
  room = Number.POSITIVE_INFINITY;
  events: string[] = [];
  write(data: Uint8Array): number {
    const n = Math.min(data.byteLength, this.room);
    this.room -= n;
    this.written.push(...data.subarray(0, n));
    return n;
  }
  shutdown(): void {
    this.events.push("shutdown");
  }
  end(): void {
    this.events.push("end");
  }
  terminate(): void {
    this.events.push("terminate");
  }
  pause(): void {
    this.events.push("pause");
  }
  resume(): void {
    this.events.push("resume");
  }
}

function setup(sendWindow = 1024) {
  const sent: { payload: number[]; end: boolean }[] = [];
  const frames: Uint8Array[] = [];
  const credit: number[] = [];
  let finished: string | undefined | null = null;
  const carrier: TcpCarrier = {
    send: (frame) => frames.push(frame) > 0,
    sendData: (_id, payload, end) => sent.push({ payload: [...payload], end }) > 0,
    sendCredit: (_id, increment) => void credit.push(increment),
    congested: false,
    onWritable: (wake) => wake(),
    budget: new WindowBudget(0),
  };
  const relay = new TcpRelay(carrier, {
    streamId: 1,
    sendWindow,
    receiveWindow: 64,
    onFinished: (error) => {
      finished = error;
    },
  });
  const socket = new FakeSocket();
  relay.attach(socket);
  return { relay, socket, sent, frames, credit, finished: () => finished };
}

const data = (payload: number[], endStream = false) =>
  create(TunnelDataSchema, { streamId: 1, payload: new Uint8Array(payload), endStream });

describe("a TCP stream's relay", () => {
  test("sends what the socket read within the peer's credit and pauses the socket for the rest", () => {
    const { relay, socket, sent } = setup(3);
    relay.fromSocket(new Uint8Array([1, 2, 3, 4, 5]));
    expect(sent).toEqual([{ payload: [1, 2, 3], end: false }]);
    expect(socket.events).toEqual(["pause"]);
    relay.sendWindow.grant(10);
    expect(sent.at(-1)).toEqual({ payload: [4, 5], end: false });
    expect(socket.events).toEqual(["pause", "resume"]);
  });

  test("half-closes the socket only after every byte before the peer's end", () => {
    const { relay, socket } = setup();
    socket.room = 2;
    relay.onData(data([1, 2, 3, 4], true));
    expect(socket.written).toEqual([1, 2]);
    expect(socket.events).toEqual([]);
    socket.room = 10;
    relay.drained();
    expect(socket.written).toEqual([1, 2, 3, 4]);
    expect(socket.events).toEqual(["shutdown"]);
  });

  test("returns credit only for bytes the socket took", () => {
    const { relay, socket, credit } = setup();
    socket.room = 8;
    relay.onData(data(Array(16).fill(1)));
    // Credit goes back a quarter of the window (16 of 64 bytes) at a time.
    expect(credit).toEqual([]);
    socket.room = 100;
    relay.drained();
    expect(credit).toEqual([16]);
  });

  test("ends cleanly once both halves ended, either side first", () => {
    const { relay, socket, sent, finished } = setup();
    relay.fromSocket(new Uint8Array([9]));
    relay.socketEnded();
    expect(sent.at(-1)).toEqual({ payload: [], end: true });
    expect(finished()).toBeNull();
    relay.onData(data([7], true));
    expect(socket.events).toEqual(["shutdown", "end"]);
    expect(finished()).toBeUndefined();
  });

  test("refuses bytes beyond the window it granted", () => {
    const { relay, socket, frames, finished } = setup();
    relay.onData(data(Array(65).fill(1)));
    const frame = decodeEnvelope(frames[0] as Uint8Array);
    expect(frame.case === "close" && frame.value.reason).toBe(TunnelClose_Reason.PROTOCOL_ERROR);
    expect(socket.events).toEqual(["terminate"]);
    expect(finished()).toBe("data beyond the granted window");
  });

  test("after the peer's end, its abnormal close still lets the bytes before it through", () => {
    const { relay, socket } = setup();
    socket.room = 1;
    relay.onData(data([1, 2], true));
    relay.onClose(create(TunnelCloseSchema, { streamId: 1, reason: TunnelClose_Reason.CANCELLED }));
    expect(socket.events).toEqual(["pause"]);
    socket.room = 10;
    relay.drained();
    expect(socket.written).toEqual([1, 2]);
    expect(socket.events).toEqual(["pause", "shutdown", "end"]);
  });
});
