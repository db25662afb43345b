/**
 * The embedded IdP now lives in fixtures/idp/, shared by the demo, the tests, the benches and
 * the soak run; this re-export keeps older import paths working.
 */
export * from '../fixtures/idp/idp.ts';
