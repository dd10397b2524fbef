/**
 * Test hook, nothing else: YOLO5_TEST_CRASH_AT=<point>[:<epoch>] kills this process with SIGKILL
 * (no cleanup, as a power cut or `kill -9` would) at a named write point of the epoch loop, so
 * tests can check that a resumed run loses nothing. Points: `results-row` (last.pt renamed into
 * place, its results.csv row not yet appended), `best-copy` (best.pt's temporary copy written, not
 * yet renamed).
 */
export function crashPoint(point: 'results-row' | 'best-copy', epoch: number): void {
  const at = process.env.YOLO5_TEST_CRASH_AT;
  if (at === undefined || (at !== point && at !== `${point}:${epoch}`)) return;
  process.kill(process.pid, 'SIGKILL');
}
