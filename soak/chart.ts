/**
 * A small dependency-free SVG chart: panels stacked over one time axis, one or more lines per
 * panel, and vertical markers (the Redis restart).
 */
export interface Series {
  name: string;
  points: Array<[number, number]>;
}

export interface PanelSpec {
  title: string;
  unit: string;
  series: Series[];
  /** Draw the y axis from 0 (default) or from the data's minimum. */
  fromZero?: boolean;
}

export interface Marker {
  at: number;
  label: string;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf'];
const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(value: number): number {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

const fmt = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1));

export function svgChart(title: string, panels: PanelSpec[], markers: Marker[], xMax: number): string {
  const width = 900;
  const panelHeight = 150;
  const left = 70;
  const right = 190;
  const top = 40;
  const gap = 40;
  const plotWidth = width - left - right;
  const height = top + panels.length * (panelHeight + gap) + 20;
  const x = (t: number) => left + (t / Math.max(xMax, 1)) * plotWidth;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="22" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  panels.forEach((panel, index) => {
    const y0 = top + index * (panelHeight + gap) + 14;
    const values = panel.series.flatMap((s) => s.points.map(([, v]) => v)).filter(Number.isFinite);
    const dataMin = values.length ? Math.min(...values) : 0;
    const dataMax = values.length ? Math.max(...values) : 1;
    const lo = panel.fromZero === false ? Math.floor(dataMin * 0.95) : 0;
    const hi = lo + niceMax((dataMax - lo) * 1.05 || 1);
    const y = (v: number) => y0 + panelHeight - ((v - lo) / (hi - lo)) * panelHeight;
    parts.push(`<text x="${left}" y="${y0 - 6}" font-weight="bold">${escapeXml(panel.title)} (${escapeXml(panel.unit)})</text>`);
    parts.push(`<rect x="${left}" y="${y0}" width="${plotWidth}" height="${panelHeight}" fill="none" stroke="#999"/>`);
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      parts.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`);
      parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
    }
    markers.forEach((marker, m) => {
      parts.push(
        `<line x1="${x(marker.at)}" x2="${x(marker.at)}" y1="${y0}" y2="${y0 + panelHeight}" stroke="#888" stroke-dasharray="4 3"/>`,
      );
      // Labels one under the other: markers a few seconds apart would overprint.
      if (index === 0) parts.push(`<text x="${x(marker.at) + 3}" y="${y0 + 12 + m * 12}" fill="#555">${escapeXml(marker.label)}</text>`);
    });
    panel.series.forEach((series, s) => {
      const color = COLORS[s % COLORS.length] as string;
      const path = series.points
        .filter(([, v]) => Number.isFinite(v))
        .map(([t, v], i) => `${i === 0 ? 'M' : 'L'}${x(t).toFixed(1)},${y(v).toFixed(1)}`)
        .join(' ');
      if (path) parts.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
      parts.push(`<rect x="${left + plotWidth + 12}" y="${y0 + 4 + s * 16}" width="10" height="10" fill="${color}"/>`);
      parts.push(`<text x="${left + plotWidth + 26}" y="${y0 + 13 + s * 16}">${escapeXml(series.name)}</text>`);
    });
    // time axis labels under every panel
    for (let i = 0; i <= 5; i++) {
      const t = (xMax * i) / 5;
      parts.push(`<text x="${x(t)}" y="${y0 + panelHeight + 13}" text-anchor="middle" fill="#555">${fmt(t)}s</text>`);
    }
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
