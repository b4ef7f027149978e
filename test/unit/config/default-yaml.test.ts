import * as path from 'node:path';
import { loadConfig } from '../../../src/config/load-config';

// config/default.yaml documents every key with its default: it must load to exactly the built-in defaults.
describe('config/default.yaml', () => {
  it('equals the schema defaults', () => {
    const fromFile = loadConfig({ file: path.join(__dirname, '../../../config/default.yaml'), env: {} });
    const builtIn = loadConfig({ env: {} });
    expect(fromFile).toEqual(builtIn);
  });
});
