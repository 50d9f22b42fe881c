// The few parts of Autobahn|JS (npm: autobahn-browser, which ships no types) the fleet view uses.
declare module "autobahn-browser" {
  export interface SessionDetails {
    authid?: string;
    authrole?: string;
  }
  export interface EventDetails {
    topic?: string;
  }
  export interface Subscription {
    topic: string;
  }
  export interface Session {
    call<T = unknown>(procedure: string, args?: unknown[], kwargs?: Record<string, unknown>): Promise<T>;
    subscribe(
      topic: string,
      handler: (args: unknown[], kwargs: Record<string, unknown>, details: EventDetails) => void,
      options?: Record<string, unknown>,
    ): Promise<Subscription>;
    unsubscribe(subscription: Subscription): Promise<unknown>;
    readonly isOpen: boolean;
  }
  export interface CloseDetails {
    reason?: string;
    message?: string;
    will_retry?: boolean;
  }
  export interface ConnectionOptions {
    url: string;
    realm: string;
    authmethods?: string[];
    authid?: string;
    onchallenge?: (session: Session, method: string, extra: Record<string, unknown>) => string;
    max_retries?: number;
    initial_retry_delay?: number;
    max_retry_delay?: number;
    retry_delay_growth?: number;
    retry_if_unreachable?: boolean;
    use_es6_promises?: boolean;
  }
  export class Connection {
    constructor(options: ConnectionOptions);
    onopen: (session: Session, details: SessionDetails) => void;
    onclose: (reason: string, details: CloseDetails) => boolean;
    open(): void;
    close(reason?: string, message?: string): void;
    readonly isOpen: boolean;
  }
  export class Error {
    error: string;
    args: unknown[];
    kwargs: Record<string, unknown>;
  }
  const autobahn: { Connection: typeof Connection; Error: typeof Error; version?: string };
  export default autobahn;
}
