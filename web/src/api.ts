// The daemon's WebSocket API: one connection, requests matched to replies by id, events
// handed to listeners. The address is relative to the page, so the dashboard works
// behind a reverse proxy that serves the daemon under a sub-path.

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Pending = { resolve: (value: unknown) => void; reject: (error: ApiError) => void };
export type EventListener = (name: string, args: Record<string, unknown>) => void;

export function siteUrl(path: string, scheme: "ws" | "http"): string {
  const url = new URL("../" + path, window.location.href);
  if (scheme === "ws") url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

export class Api {
  private socket: WebSocket | null = null;
  private next = 0;
  private pending = new Map<string, Pending>();
  private opened: Promise<void> | null = null;
  onEvent: EventListener = () => {};
  onClose: (reason: string) => void = () => {};

  connect(): Promise<void> {
    if (this.opened) return this.opened;
    this.opened = new Promise((resolve, reject) => {
      const socket = new WebSocket(siteUrl("", "ws"));
      this.socket = socket;
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new ApiError("0", "cannot reach the daemon's WebSocket"));
      socket.onmessage = (message) => this.received(String(message.data));
      socket.onclose = (event) => {
        this.opened = null;
        this.socket = null;
        for (const p of this.pending.values()) {
          p.reject(new ApiError(String(event.code), event.reason || "the connection closed"));
        }
        this.pending.clear();
        this.onClose(event.reason || `the connection closed (${event.code})`);
      };
    });
    return this.opened;
  }

  close(): void {
    this.socket?.close(1000);
  }

  private received(text: string): void {
    let message: { id?: string; name?: string; namespace?: string; args?: unknown };
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.namespace === "events" && !message.id && message.name !== "response" && message.name !== "error") {
      this.onEvent(String(message.name), (message.args ?? {}) as Record<string, unknown>);
      return;
    }
    const waiting = message.id ? this.pending.get(message.id) : undefined;
    if (!waiting || !message.id) return;
    this.pending.delete(message.id);
    if (message.name === "error") {
      const body = (message.args ?? {}) as { code?: string; message?: string };
      waiting.reject(new ApiError(String(body.code ?? "?"), String(body.message ?? "unknown error")));
    } else {
      waiting.resolve(message.args);
    }
  }

  async call<T = Record<string, unknown>>(namespace: string, name: string, args: unknown): Promise<T> {
    await this.connect();
    const id = `ui${++this.next}`;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket?.send(JSON.stringify({ namespace, name, id, args }));
    });
  }

  /** An iohyve action; the reply's value under the action's name (sysadm's shape). */
  async iohyve<T = Record<string, unknown>>(action: string, args: Record<string, unknown> = {}): Promise<T> {
    const reply = await this.call<Record<string, unknown>>("sysadm", "iohyve", { action, ...args });
    return (reply && typeof reply === "object" && action in reply ? reply[action] : reply) as T;
  }
}
