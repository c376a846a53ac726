// A relay on socket.io, as an app would write one: rooms are socket.io rooms (named by the
// `room` query parameter), an `m` event goes to the room's other members, and the sender gets
// socket.io's own ack (the event is sent with an ack id). WebSocket transport only (the load
// generator speaks Engine.IO v4 framing over a plain WebSocket), no compression. Engine.IO's
// heartbeat is set past a bench run's length, as Relaycast's pings are, since the generator's
// subscribers only read.
//   node bench/node/socketio-relay.js 127.0.0.1:9300
import { createServer } from "node:http";
import { Server } from "socket.io";

const [host, port] = (process.argv[2] ?? "127.0.0.1:9300").split(":");
const server = createServer();
const io = new Server(server, {
  transports: ["websocket"],
  perMessageDeflate: false,
  pingInterval: 300_000,
  pingTimeout: 60_000,
});

io.on("connection", (socket) => {
  const room = String(socket.handshake.query.room ?? "/");
  socket.join(room);
  socket.on("m", (text, ack) => {
    socket.to(room).emit("m", text);
    if (typeof ack === "function") ack();
  });
});
server.listen(Number(port), host, () => console.log(`socket.io relay listening on ${host}:${port}`));
