/**
 * modules_to_save: a trainable copy of a whole module per adapter (HF's ModulesToSaveWrapper), used for task
 * heads that a fine-tune must learn from scratch. The original stays for withAdapterDisabled and other adapters.
 */
import { Module, ModuleDict, cloneModule } from "../nn/index.js";

type Forwardable = Module & { forward(...args: unknown[]): unknown };

/** Holds the original module and one trainable copy per adapter; forwards through the active copy. */
export class ModulesToSaveWrapper extends Module {
  original_module: Module;
  modules_to_save: ModuleDict;
  activeAdapter: string;
  disableAdapters = false;

  constructor(original: Module, adapterName: string) {
    super();
    this.original_module = this.registerModule("original_module", original);
    this.modules_to_save = this.registerModule("modules_to_save", new ModuleDict());
    this.activeAdapter = adapterName;
    this.update(adapterName);
  }

  /** Add (or refresh) the trainable copy for an adapter; the original is frozen. */
  update(adapterName: string): void {
    if (!this.modules_to_save.has(adapterName)) {
      const copy = cloneModule(this.original_module);
      copy.requiresGrad_(true);
      this.modules_to_save.set(adapterName, copy);
    }
    this.original_module.requiresGrad_(false);
  }

  /** Make one adapter's copy the active, trainable one. */
  setAdapter(adapterName: string): void {
    for (const key of this.modules_to_save.keys()) this.modules_to_save.get(key).requiresGrad_(key === adapterName);
    this.activeAdapter = adapterName;
  }

  /** The module that forward uses now. */
  activeModule(): Module {
    return this.disableAdapters || !this.modules_to_save.has(this.activeAdapter)
      ? this.original_module
      : this.modules_to_save.get(this.activeAdapter);
  }

  /** Forward through the active copy (the original when disabled). */
  forward(...args: unknown[]): unknown {
    return (this.activeModule() as Forwardable).forward(...args);
  }
}

/** Whether a module path is selected by a modules_to_save list (HF matches by plain name suffix). */
export function isModuleToSave(key: string, names: readonly string[]): boolean {
  return names.some((n) => key.endsWith(n));
}
