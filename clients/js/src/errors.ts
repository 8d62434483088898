import type { Issue } from './types.js';

export interface RelayErrorExtra {
  issues?: Issue[];
  retryAfterMs?: number | null;
  permission?: string | null;
}

/**
 * A call the edge refused, or could not be made. `status` is the HTTP status
 * (0 = network failure); `code` the contract's error code (`invalid_request`,
 * `unauthenticated`, `forbidden`, `missing_permission`, `rate_limited`,
 * `queue_full`, `gateway_error`, `gateway_timeout`, `payload_too_large`,
 * `network_error` …).
 */
export class RelayError extends Error {
  readonly status: number;
  readonly code: string;
  /** Field-level problems of a 400. */
  readonly issues: Issue[];
  /** How long to wait before trying again (429), from the body or `Retry-After`. */
  readonly retryAfterMs: number | null;
  /** The Discord permission missing (`code` missing_permission), e.g. `SEND_MESSAGES`. */
  readonly permission: string | null;

  constructor(status: number, code: string, message: string, extra: RelayErrorExtra = {}) {
    super(message);
    this.name = 'RelayError';
    this.status = status;
    this.code = code;
    this.issues = extra.issues ?? [];
    this.retryAfterMs = extra.retryAfterMs ?? null;
    this.permission = extra.permission ?? null;
  }
}

const CODES: Record<number, string> = {
  400: 'invalid_request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  502: 'gateway_error',
  503: 'queue_full',
  504: 'gateway_timeout',
};

/** The contract's code for an HTTP status whose body named none. */
export function codeFor(status: number): string {
  return CODES[status] ?? 'http_' + status;
}

/** `Retry-After` in milliseconds: delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null || value.trim() === '') return null;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** The RelayError for a non-2xx response whose body (JSON or not) was read as `json`. */
export function errorFromResponse(status: number, statusText: string, json: unknown, headers: { get(name: string): string | null }): RelayError {
  const body = (json && typeof json === 'object' ? json : {}) as Record<string, unknown>;
  const err = (body.error && typeof body.error === 'object' ? body.error : {}) as Record<string, unknown>;
  let retryAfterMs = typeof body.retryAfterMs === 'number' && Number.isFinite(body.retryAfterMs) ? body.retryAfterMs : null;
  if (retryAfterMs === null && (status === 429 || status === 503)) retryAfterMs = parseRetryAfter(headers.get('Retry-After'));
  return new RelayError(
    status,
    typeof err.code === 'string' && err.code ? err.code : codeFor(status),
    typeof err.message === 'string' && err.message ? err.message : statusText || 'request failed',
    {
      issues: Array.isArray(body.issues) ? (body.issues as Issue[]) : [],
      retryAfterMs,
      permission: typeof err.permission === 'string' ? err.permission : null,
    },
  );
}
