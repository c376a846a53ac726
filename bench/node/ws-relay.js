// A bare relay on Node's `ws`, with the Rust reference's semantics (bench/src/reference.rs):
// a connection's room is its URL path; each text frame goes to every other member of the room
// and the sender gets a one-byte ack (`~`). No JSON, no storage, no limits.
//   node bench/node/ws-relay.js 127.0.0.1:9200
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const [host, port] = (process.argv[2] ?? "127.0.0.1:9200").split(":");
const rooms = new Map();
const server = createServer();
const wss = new WebSocketServer({ server, perMessageDeflate: false });

wss.on("connection", (ws, request) => {
  const room = new URL(request.url, "http://relay").pathname;
  let members = rooms.get(room);
  if (!members) rooms.set(room, (members = new Set()));
  members.add(ws);
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    for (const other of members) {
      if (other !== ws) other.send(data, { binary: false });
    }
    ws.send("~");
  });
  ws.on("close", () => {
    members.delete(ws);
    if (members.size === 0) rooms.delete(room);
  });
});
server.listen(Number(port), host, () => console.log(`ws relay listening on ${host}:${port}`));
