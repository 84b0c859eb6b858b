import type { ReactNode } from 'react';
import { Navigate, Route, Routes, useLocation } from 'react-router-dom';
import { CallbackPage } from './auth/CallbackPage';
import { LoginPage } from './auth/LoginPage';
import { useAuth } from './auth/AuthProvider';
import { AppLayout } from './components/AppLayout';
import { LoadingState } from './components/states';
import { ApiKeysPage } from './features/api-keys/ApiKeysPage';
import { AuditPage } from './features/audit/AuditPage';
import { BusinessUnitsPage } from './features/business-units/BusinessUnitsPage';
import { DeploymentsPage } from './features/deployments/DeploymentsPage';
import { FineTuningPage } from './features/fine-tuning/FineTuningPage';
import { MembersPage } from './features/members/MembersPage';
import { ModelVersionsPage } from './features/model-versions/ModelVersionsPage';
import { OverviewPage } from './features/overview/OverviewPage';
import { PoliciesPage } from './features/policies/PoliciesPage';
import { PromptLogsPage } from './features/prompt-logs/PromptLogsPage';

function RequireSession({ children }: { children: ReactNode }) {
  const { ready, session } = useAuth();
  const location = useLocation();
  if (!ready) return <LoadingState label="Starting the console…" />;
  if (!session) {
    return <Navigate to="/login" replace state={{ from: location.pathname + location.search }} />;
  }
  return <>{children}</>;
}

export function App() {
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route path="/auth/callback" element={<CallbackPage />} />
      <Route
        element={
          <RequireSession>
            <AppLayout />
          </RequireSession>
        }
      >
        <Route index element={<Navigate to="/overview" replace />} />
        <Route path="/overview" element={<OverviewPage />} />
        <Route path="/model-versions" element={<ModelVersionsPage />} />
        <Route path="/business-units" element={<BusinessUnitsPage />} />
        <Route path="/members" element={<MembersPage />} />
        <Route path="/api-keys" element={<ApiKeysPage />} />
        <Route path="/deployments" element={<DeploymentsPage />} />
        <Route path="/fine-tuning" element={<FineTuningPage />} />
        <Route path="/policies" element={<PoliciesPage />} />
        <Route path="/audit" element={<AuditPage />} />
        <Route path="/prompt-logs" element={<PromptLogsPage />} />
        <Route path="*" element={<Navigate to="/overview" replace />} />
      </Route>
    </Routes>
  );
}
