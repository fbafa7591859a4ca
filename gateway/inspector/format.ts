// Numbers as a person reads them in a table cell; a no-break space keeps each unit by its number.

const UNITS = ["B", "KiB", "MiB", "GiB"];

export function bytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n}\u00a0B` : `${value.toFixed(1)}\u00a0${UNITS[unit]}`;
}

export function ms(value: number | null): string {
  if (value === null) return "–";
  return value < 1000 ? `${value.toFixed(1)}\u00a0ms` : `${(value / 1000).toFixed(2)}\u00a0s`;
}

/** Local wall-clock time to the second; the cell's title has the full timestamp. */
export function clock(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour12: false });
}

/** The CSS class that colours a status by its class (2xx, 4xx, ...). */
export function statusClass(status: number): string {
  return `status s${Math.floor(status / 100)}xx`;
}
