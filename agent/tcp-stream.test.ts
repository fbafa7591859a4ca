import { afterEach, describe, expect, spyOn, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { WindowBudget } from "../shared/flow.ts";
import { TunnelClose_Reason, TunnelRequestSchema } from "../shared/gen/tunnel_pb.ts";
import { decodeEnvelope, INITIAL_WINDOW } from "../shared/protocol.ts";
import { LocalTcpStream, type TcpStreamCarrier } from "./tcp-stream.ts";

/** A carrier that keeps what the stream sends. */
function carrier() {
  const frames: Uint8Array[] = [];
  const forgotten: LocalTcpStream[] = [];
  const value: TcpStreamCarrier = {
    send: (frame) => frames.push(frame) > 0,
    sendData: () => true,
    sendCredit: () => {},
    congested: false,
    onWritable: (wake) => wake(),
    budget: new WindowBudget(0),
    forget: (stream) => void forgotten.push(stream),
  };
  return { value, frames, forgotten };
}

const connect = spyOn(Bun, "connect");
afterEach(() => connect.mockClear());

describe("a TCP stream on the agent", () => {
  test("refuses a name it was not given, and connects nowhere", () => {
    const { value, frames, forgotten } = carrier();
    const request = create(TunnelRequestSchema, {
      streamId: 7,
      tcpService: "postgres",
      window: INITIAL_WINDOW,
    });
    const stream = new LocalTcpStream(value, request);
    stream.start("postgres", [{ name: "ssh", host: "127.0.0.1", port: 22 }]);
    expect(connect).not.toHaveBeenCalled();
    expect(frames.length).toBe(1);
    const frame = decodeEnvelope(frames[0] as Uint8Array);
    expect(frame.case).toBe("close");
    if (frame.case !== "close") return;
    expect(frame.value.streamId).toBe(7);
    expect(frame.value.reason).toBe(TunnelClose_Reason.BAD_REQUEST);
    expect(frame.value.message).toBe("this agent serves no TCP service named 'postgres'");
    expect(forgotten).toEqual([stream]);
  });

  test("says the service is unreachable when its connection is refused", async () => {
    const { value, frames, forgotten } = carrier();
    const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = listener.port;
    listener.stop(true);
    const request = create(TunnelRequestSchema, { streamId: 3, tcpService: "ssh", window: INITIAL_WINDOW });
    const stream = new LocalTcpStream(value, request);
    stream.start("ssh", [{ name: "ssh", host: "127.0.0.1", port }]);
    expect(connect).toHaveBeenCalledTimes(1);
    for (let i = 0; i < 100 && forgotten.length === 0; i++) await Bun.sleep(10);
    const frame = decodeEnvelope(frames[0] as Uint8Array);
    expect(frame.case === "close" && frame.value.reason).toBe(TunnelClose_Reason.LOCAL_UNREACHABLE);
  });
});
