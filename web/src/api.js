// Reads /v1/get-prices: one call per page, following `nextCursor` to the end.

/** Seconds since the epoch of an RFC 3339 time from the API. */
export function seconds(time) {
  return Math.round(Date.parse(time) / 1000);
}

/** An error answer of the API, with its problem detail when it sent one. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(`HTTP ${status}${detail ? `: ${detail}` : ''}`);
    this.status = status;
  }
}

/**
 * Every entry of `/v1/get-prices` for `params` (null and undefined values are left out), all
 * pages of it.
 */
export async function getPrices(params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) query.set(name, String(value));
  }
  const entries = [];
  for (let page = 0; page < 100; page += 1) {
    const response = await fetch(`/v1/get-prices?${query}`, { cache: 'no-store' });
    if (!response.ok) {
      let detail = '';
      try {
        detail = (await response.json()).detail ?? '';
      } catch {
        // Not a problem document: the status says enough.
      }
      throw new ApiError(response.status, detail);
    }
    const body = await response.json();
    entries.push(...body.prices);
    if (!body.nextCursor) return entries;
    query.set('cursor', body.nextCursor);
  }
  return entries;
}
