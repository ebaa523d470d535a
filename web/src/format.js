// How numbers and times read on the page.

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const twoDecimals = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });

export function price(value) {
  return value === null || value === undefined ? '—' : integer.format(value);
}

export function average(value) {
  return twoDecimals.format(value);
}

export function count(value) {
  return integer.format(value);
}

/** `HH:MM:SS` in UTC (the charts' time axis is UTC too). */
export function clock(secondsSinceEpoch) {
  return new Date(secondsSinceEpoch * 1000).toISOString().slice(11, 19);
}

/** An interval's name as the API spells it: 30s, 1m, 1h, 1d. */
export function intervalName(secs) {
  if (secs % 86400 === 0) return `${secs / 86400}d`;
  if (secs % 3600 === 0) return `${secs / 3600}h`;
  if (secs % 60 === 0) return `${secs / 60}m`;
  return `${secs}s`;
}
