import { hardwareText, parseHardwareList } from '../../../src/cms/firmware-attributes';

/** hardwareText: what `firmware list` shows of a release's target hardware (RFC 4108 §2.2.2, §2.2.5). */
describe('hardwareText', () => {
  it('writes the targets as --hardware takes them, so a listed value can be given back to firmware create', () => {
    const targets = [{ type: '1.3.6.1.4.1.99.1', serial: 'SN-1' }, { type: '1.3.6.1.4.1.99.2' }];
    expect(hardwareText(targets)).toBe('1.3.6.1.4.1.99.1:SN-1,1.3.6.1.4.1.99.2');
    expect(parseHardwareList(hardwareText(targets))).toEqual(targets);
  });

  it('says any for a release without targets, and for one recorded before the targets were kept', () => {
    expect(hardwareText([])).toBe('any');
    expect(hardwareText(undefined)).toBe('any');
  });
});
