// The dashboard's entry point (bundled with app.css by ../build.mjs into assets/app.<hash>.js).

import { Dashboard } from './dashboard.js';

const dashboard = new Dashboard(document);
window.tickpipe = dashboard.hook();
dashboard.start();
