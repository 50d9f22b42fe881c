// The console view: an xterm.js terminal on the daemon's /console/<guest> WebSocket.
// Binary frames carry the guest's bytes both ways; text frames carry JSON status.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";

export type ConsoleHooks = {
  status: (writer: boolean, state: string, viewers: number) => void;
  closed: (reason: string) => void;
};

export function attach(where: HTMLElement, url: string, token: string, hooks: ConsoleHooks) {
  const terminal = new Terminal({ convertEol: false, cursorBlink: true, scrollback: 5000, fontSize: 14 });
  const fit = new FitAddon();
  terminal.loadAddon(fit);
  terminal.open(where);
  fit.fit();
  const resize = () => fit.fit();
  window.addEventListener("resize", resize);
  let writer = false;
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => socket.send(JSON.stringify({ token }));
  socket.onmessage = (event) => {
    if (event.data instanceof ArrayBuffer) {
      terminal.write(new Uint8Array(event.data));
      return;
    }
    const message = JSON.parse(String(event.data)) as Record<string, unknown>;
    if (message.type === "status") {
      writer = message.writer === true;
      hooks.status(writer, String(message.state ?? ""), Number(message.viewers ?? 0));
    } else if (message.type === "error") {
      terminal.write(`\r\n[${String(message.message ?? "error")}]\r\n`);
    }
  };
  socket.onclose = (event) => hooks.closed(event.reason || `the console closed (${event.code})`);
  const encoder = new TextEncoder();
  terminal.onData((data) => {
    if (writer && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  terminal.focus();
  return {
    take: () => socket.send(JSON.stringify({ type: "take" })),
    close: () => {
      window.removeEventListener("resize", resize);
      socket.close(1000);
      terminal.dispose();
    },
  };
}
