import { DeviceCaError } from '../errors/device-ca-error';

/** distinctIds refuses a bulk batch that names one id twice (a bulk write would otherwise half-apply it). */
export function distinctIds(ids: string[]): void {
  const seen = new Set<string>();
  for (const id of ids) {
    if (seen.has(id)) throw new DeviceCaError('bad-request', `device ${id} appears twice in one batch`);
    seen.add(id);
  }
}
